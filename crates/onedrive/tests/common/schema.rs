//! JSON Schema validators for Graph bodies, converted from the OpenAPI subset in tests/data.
//!
//! OpenAPI 3.0 schemas are JSON Schema with two dialect differences, converted here:
//! `nullable: true` becomes a `"null"` alternative of `type`; and Microsoft's generator writes
//! `additionalProperties: {type: object}` on every type to mean "open type" (annotations such as
//! `@microsoft.graph.conflictBehavior` and `@odata.nextLink` are strings), so it is dropped.

use serde_json::{Value, json};

const SPEC: &str = include_str!("../data/graph-files-subset.yaml");

fn convert(value: &mut Value) {
    match value {
        Value::Object(map) => {
            if map.remove("nullable") == Some(Value::Bool(true)) {
                match map.get("type").cloned() {
                    Some(Value::String(t)) => {
                        map.insert("type".into(), json!([t, "null"]));
                    }
                    _ => {
                        let inner = Value::Object(std::mem::take(map));
                        map.insert("anyOf".into(), json!([inner, {"type": "null"}]));
                    }
                }
            }
            if map.get("additionalProperties") == Some(&json!({"type": "object"})) {
                map.remove("additionalProperties");
            }
            for child in map.values_mut() {
                convert(child);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(convert),
        _ => {}
    }
}

/// The bodies the mock checks.
pub struct Schemas {
    pub drive_item: jsonschema::Validator,
    pub collection: jsonschema::Validator,
    pub upload_session: jsonschema::Validator,
    pub odata_error: jsonschema::Validator,
    pub create_session_request: jsonschema::Validator,
    pub create_child_request: jsonschema::Validator,
}

impl Schemas {
    pub fn load() -> Self {
        let mut spec: Value = serde_yaml::from_str(SPEC).expect("the OpenAPI subset parses");
        convert(&mut spec);
        let components = spec["components"].clone();
        let build = |schema: &Value| {
            let mut schema = schema.clone();
            schema["components"] = components.clone();
            jsonschema::options()
                .should_validate_formats(false)
                .build(&schema)
                .expect("schema builds")
        };
        let by_ref = |name: &str| build(&json!({"$ref": format!("#/components/schemas/{name}")}));
        let operation = |path: &str, method: &str| {
            spec["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"]
                .clone()
        };
        let create_session = operation(
            "/drives/{drive-id}/items/{driveItem-id}/microsoft.graph.createUploadSession",
            "post",
        );
        assert!(
            create_session.is_object(),
            "createUploadSession request schema found"
        );
        let create_child = operation("/drives/{drive-id}/items/{driveItem-id}/children", "post");
        assert!(create_child.is_object(), "children POST schema found");
        Self {
            drive_item: by_ref("microsoft.graph.driveItem"),
            collection: by_ref("microsoft.graph.driveItemCollectionResponse"),
            upload_session: by_ref("microsoft.graph.uploadSession"),
            odata_error: by_ref("microsoft.graph.ODataErrors.ODataError"),
            create_session_request: build(&create_session),
            create_child_request: build(&create_child),
        }
    }
}

/// The first violation of `validator` by `body`, if any.
pub fn violation(validator: &jsonschema::Validator, body: &Value) -> Option<String> {
    validator.validate(body).err().map(|e| e.to_string())
}

#[test]
fn converted_schemas_reject_wrong_shapes() {
    let schemas = Schemas::load();
    // A driveItem whose size is a string, and a session whose uploadUrl is a number.
    assert!(violation(&schemas.drive_item, &json!({"id": "x", "size": "12"})).is_some());
    assert!(violation(&schemas.upload_session, &json!({"uploadUrl": 5})).is_some());
    assert!(violation(&schemas.odata_error, &json!({"message": "no error object"})).is_some());
    assert!(
        violation(
            &schemas.create_session_request,
            &json!({"item": {"name": 7}})
        )
        .is_some()
    );
    // Nullable properties take null; annotations are open.
    assert!(
        violation(
            &schemas.drive_item,
            &json!({"id": "x", "name": null, "@odata.etag": "e"})
        )
        .is_none()
    );
    assert!(
        violation(
            &schemas.create_session_request,
            &json!({"item": {"name": "a", "@microsoft.graph.conflictBehavior": "fail"}})
        )
        .is_none()
    );
}
