// PostgreSQL for tests: an in-memory PGlite (PostgreSQL compiled to WebAssembly) served over the
// Postgres wire protocol on a free loopback port, several clients at once. Run by scripts/pglite,
// which installs the pinned packages of package.json next to a copy of this file.
//
//   node server.mjs [--bare] [--max-connections N]
//
// Without --bare, pgvector is loaded and `CREATE EXTENSION vector` has run (what an operator does
// once per database); --bare serves a PostgreSQL without pgvector. Prints one line,
// `listening <port>`, once clients can connect; SIGTERM or SIGINT stops it.
import { PGlite } from '@electric-sql/pglite'
import { vector } from '@electric-sql/pglite-pgvector'
import { PGLiteSocketServer } from '@electric-sql/pglite-socket'

const args = process.argv.slice(2)
const bare = args.includes('--bare')
const at = args.indexOf('--max-connections')
const maxConnections = at >= 0 ? Number(args[at + 1]) : 16

const db = await PGlite.create('memory://', bare ? {} : { extensions: { vector } })
if (!bare) await db.exec('CREATE EXTENSION IF NOT EXISTS vector')

const server = new PGLiteSocketServer({ db, host: '127.0.0.1', port: 0, maxConnections })
server.addEventListener('error', (e) => console.error('pglite server:', e.detail))
await server.start()
const port = server.server?.address()?.port
if (!port) throw new Error(`no listening port (${server.getServerConn()})`)
console.log(`listening ${port}`)

let stopping = false
const stop = async () => {
  if (stopping) return
  stopping = true
  await server.stop().catch(() => {})
  await db.close().catch(() => {})
  process.exit(0)
}
process.on('SIGTERM', stop)
process.on('SIGINT', stop)
