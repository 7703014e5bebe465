//! The development schema registry, exercised over HTTP through schema_registry_converter, the
//! client sluice uses against any Confluent-compatible registry.

use schema_registry_converter::async_impl::schema_registry::{
    get_all_subjects, get_all_versions, get_schema_by_id, get_schema_by_subject, post_schema,
    SrSettings,
};
use schema_registry_converter::schema_registry_common::{
    SchemaType, SubjectNameStrategy, SuppliedSchema,
};
use sluice::avro::SchemaKind;
use sluice::devstack::registry::serve;

fn avro(text: &str) -> SuppliedSchema {
    SuppliedSchema::new(None, SchemaType::Avro, text.to_owned())
}

fn with_field(field: serde_json::Value) -> String {
    let mut v: serde_json::Value = serde_json::from_str(SchemaKind::Document.text()).expect("json");
    v["fields"].as_array_mut().expect("fields").push(field);
    v.to_string()
}

#[tokio::test]
async fn registers_looks_up_and_versions_subjects() {
    let registry = serve("127.0.0.1:0".parse().expect("addr")).await.expect("serve");
    let settings = SrSettings::new(registry.url());
    let first = post_schema(&settings, "docs-value".into(), avro(SchemaKind::Document.text()))
        .await
        .expect("register");
    let again = post_schema(&settings, "docs-value".into(), avro(SchemaKind::Document.text()))
        .await
        .expect("idempotent");
    assert_eq!(first.id, again.id, "the same schema keeps its id");
    let other = post_schema(&settings, "other-value".into(), avro(SchemaKind::Document.text()))
        .await
        .expect("second subject");
    assert_eq!(other.id, first.id, "identical schemas share an id across subjects");

    let evolved =
        with_field(serde_json::json!({"name": "lang", "type": "string", "default": "en"}));
    let v2 = post_schema(&settings, "docs-value".into(), avro(&evolved))
        .await
        .expect("compatible evolution");
    assert_ne!(v2.id, first.id);
    assert_eq!(
        get_all_versions(&settings, "docs-value".into()).await.expect("versions"),
        vec![1, 2]
    );
    let latest = get_schema_by_subject(
        &settings,
        &SubjectNameStrategy::TopicNameStrategy("docs".into(), false),
    )
    .await
    .expect("latest");
    assert_eq!(latest.id, v2.id);
    let by_id = get_schema_by_id(first.id, &settings).await.expect("by id");
    assert!(by_id.schema.contains("sluice.Document"));
    let mut subjects = get_all_subjects(&settings).await.expect("subjects");
    subjects.sort();
    assert_eq!(subjects, vec!["docs-value", "other-value"]);
}

#[tokio::test]
async fn refuses_a_backward_incompatible_change_and_unknown_ids() {
    let registry = serve("127.0.0.1:0".parse().expect("addr")).await.expect("serve");
    let settings = SrSettings::new(registry.url());
    post_schema(&settings, "docs-value".into(), avro(SchemaKind::Document.text()))
        .await
        .expect("register");
    let breaking = with_field(serde_json::json!({"name": "required_new", "type": "string"}));
    let err = post_schema(&settings, "docs-value".into(), avro(&breaking))
        .await
        .expect_err("no default: incompatible");
    assert!(!err.retriable);
    assert!(format!("{err:?}").contains("409"), "{err:?}");
    let missing = get_schema_by_id(9999, &settings).await.expect_err("unknown id");
    assert!(!missing.retriable, "an unknown id is final, not an outage");
}

#[tokio::test]
async fn an_unreachable_registry_is_a_retriable_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    drop(listener);
    let err = get_schema_by_id(1, &SrSettings::new(url)).await.expect_err("nothing listens");
    assert!(err.retriable);
}

#[tokio::test]
async fn a_simulated_outage_refuses_requests_and_counts_them() {
    let registry = serve("127.0.0.1:0".parse().expect("addr")).await.expect("serve");
    let settings = SrSettings::new(registry.url());
    post_schema(&settings, "docs-value".into(), avro(SchemaKind::Document.text()))
        .await
        .expect("register");
    assert_eq!(registry.refused_requests(), 0);
    registry.set_available(false);
    let err = get_schema_by_id(1, &settings).await.expect_err("outage");
    assert!(err.retriable, "an outage is retriable: {err:?}");
    assert!(registry.refused_requests() >= 1, "the refused lookup is counted");
    registry.set_available(true);
    let before = registry.refused_requests();
    get_schema_by_id(1, &settings).await.expect("available again");
    assert_eq!(registry.refused_requests(), before, "answered requests are not counted");
}
