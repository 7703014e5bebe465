//! Runs a flow of `tools/browser/` (node + playwright-core driving Chromium) and returns what it
//! printed; its progress goes to stderr as it runs. A flow that fails fails the test with its
//! output.

/// Runs the flow script at `script` with `env` added to this process's environment.
pub async fn run_flow<K, V>(
    script: impl AsRef<std::path::Path>,
    env: impl IntoIterator<Item = (K, V)>,
) -> String
where
    K: AsRef<std::ffi::OsStr>,
    V: AsRef<std::ffi::OsStr>,
{
    let script = script.as_ref().to_owned();
    let flow = script.display().to_string();
    let env: Vec<_> =
        env.into_iter().map(|(k, v)| (k.as_ref().to_owned(), v.as_ref().to_owned())).collect();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("node")
            .arg(&script)
            .envs(env)
            .stderr(std::process::Stdio::inherit())
            .output()
    })
    .await
    .expect("joins")
    .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "the browser flow {flow} failed: {stdout}");
    stdout
}
