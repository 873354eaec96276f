//! Validation of request and response bodies (and query parameters) against the OpenAPI
//! subset in `tests/data/openapi-subset.json` (Cloudflare's published schema, see
//! `tests/data/README.md`).
//!
//! OpenAPI 3.0 schemas are JSON Schema with three differences handled here: `nullable: true`
//! becomes a `null` member of `type` (and `enum`); `readOnly` properties are not required in
//! requests (their names are dropped from `required` in the request view); `$ref`s point into
//! `components`, so each validator is compiled with the document's `components` beside it.
//! Quirks of the subset: DNS operations use `"4xx"` where the others use `"4XX"` (both are
//! looked up), and the DNS failure schema is `allOf` a success schema (`success: true`) and a
//! failure schema (`success: false`), which nothing satisfies: failures are validated against
//! its `*-common-failure` member alone. Two more schema bugs are patched in [`Spec::load`]
//! and listed in `tests/data/README.md`.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

const DOCUMENT: &str = include_str!("../../tests/data/openapi-subset.json");

/// Whether a body is sent by the client or by the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Direction {
    Request,
    Response,
}

/// The OpenAPI document and the validators compiled from it so far.
pub(crate) struct Spec {
    /// Paths as `(method, segments)` with `{param}` segments.
    operations: Vec<(String, Vec<String>, Value)>,
    /// `components`, request view (readOnly names not required).
    request_components: Value,
    /// `components`, response view.
    response_components: Value,
    validators: Mutex<HashMap<String, Arc<jsonschema::Validator>>>,
}

impl std::fmt::Debug for Spec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spec")
            .field("operations", &self.operations.len())
            .finish_non_exhaustive()
    }
}

/// A matched operation: its template and definition.
pub(crate) struct Operation<'a> {
    pub(crate) template: String,
    definition: &'a Value,
}

impl Spec {
    pub(crate) fn load() -> Result<Self, String> {
        let mut doc: Value =
            serde_json::from_str(DOCUMENT).map_err(|e| format!("openapi subset: {e}"))?;
        nullable_to_json_schema(&mut doc);
        let mut operations = Vec::new();
        if let Some(paths) = doc.get("paths").and_then(Value::as_object) {
            for (path, item) in paths {
                let segments: Vec<String> = path
                    .trim_matches('/')
                    .split('/')
                    .map(str::to_owned)
                    .collect();
                for (method, op) in item.as_object().into_iter().flatten() {
                    if method == "parameters" {
                        continue;
                    }
                    operations.push((method.to_ascii_uppercase(), segments.clone(), op.clone()));
                }
            }
        }
        // Quirk: the lists' collection base says `result` is an array, but single lists and
        // operation answers extend it with an object `result` (as Cloudflare sends them).
        if let Some(result) = doc.pointer_mut(
            "/components/schemas/lists_api-response-collection/allOf/1/properties/result",
        ) {
            *result = json!({});
        }
        // Quirk: `lists_item` applies `oneOf` [ip (a string schema), redirect, hostname, asn]
        // to the item object itself, which no item satisfies; its properties already say what
        // each field holds.
        if let Some(Value::Object(item)) = doc.pointer_mut("/components/schemas/lists_item") {
            item.remove("oneOf");
        }
        let response_components = doc.get("components").cloned().unwrap_or(Value::Null);
        let mut request_components = response_components.clone();
        let mut read_only = BTreeSet::new();
        collect_read_only(&request_components, &mut read_only);
        drop_required(&mut request_components, &read_only);
        // Requests reuse the components' response shapes whose ids are Cloudflare's to set.
        drop_required(&mut request_components, &BTreeSet::from(["id".to_owned()]));
        Ok(Spec {
            operations,
            request_components,
            response_components,
            validators: Mutex::new(HashMap::new()),
        })
    }

    /// The operation for `method` and `path` (below `/client/v4`), if the subset has it.
    pub(crate) fn operation(&self, method: &str, path: &str) -> Option<Operation<'_>> {
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        self.operations
            .iter()
            .find(|(m, template, _)| {
                m == method
                    && template.len() == segments.len()
                    && template
                        .iter()
                        .zip(&segments)
                        .all(|(t, s)| (t.starts_with('{') && !s.is_empty()) || t == s)
            })
            .map(|(_, template, definition)| Operation {
                template: format!("/{}", template.join("/")),
                definition,
            })
    }

    fn resolve<'a>(&'a self, value: &'a Value, direction: Direction) -> &'a Value {
        // `$ref`s to components/requestBodies, responses and parameters.
        let Some(reference) = value.get("$ref").and_then(Value::as_str) else {
            return value;
        };
        let components = match direction {
            Direction::Request => &self.request_components,
            Direction::Response => &self.response_components,
        };
        reference
            .strip_prefix("#/components")
            .and_then(|pointer| components.pointer(pointer))
            .unwrap_or(value)
    }

    fn validator(
        &self,
        key: &str,
        schema: &Value,
        direction: Direction,
    ) -> Result<Arc<jsonschema::Validator>, String> {
        let mut cache = self.validators.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(v) = cache.get(key) {
            return Ok(v.clone());
        }
        let components = match direction {
            Direction::Request => &self.request_components,
            Direction::Response => &self.response_components,
        };
        let root = json!({ "allOf": [schema], "components": components });
        let validator = jsonschema::options()
            .with_draft(jsonschema::Draft::Draft4)
            .build(&root)
            .map_err(|e| format!("schema for {key} does not compile: {e}"))?;
        let validator = Arc::new(validator);
        cache.insert(key.to_owned(), validator.clone());
        Ok(validator)
    }

    fn check(
        &self,
        key: &str,
        schema: &Value,
        direction: Direction,
        body: &Value,
    ) -> Result<(), String> {
        let validator = self.validator(key, schema, direction)?;
        let errors: Vec<String> = validator
            .iter_errors(body)
            .take(5)
            .map(|e| format!("{} at `{}`", e, e.instance_path()))
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(format!("{key}: {}", errors.join("; ")))
        }
    }

    /// Checks a request body. A body is required where the operation says so.
    ///
    /// Quirk: a setting's PATCH body (`{"value": ...}`) matches several members of the
    /// `zones_setting` oneOf (the `id` that tells them apart is not sent), so it is checked
    /// against the named setting's own schema (`zones_ssl`, ...).
    pub(crate) fn check_request(
        &self,
        op: &Operation<'_>,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(), String> {
        if op.template.ends_with("/settings/{setting_id}")
            && let (Some(setting), Some(body)) = (path.rsplit('/').next(), body)
        {
            let schema = json!({"$ref": format!("#/components/schemas/zones_{setting}")});
            if self
                .request_components
                .pointer(&format!("/schemas/zones_{setting}"))
                .is_none()
            {
                return Err(format!("unknown zone setting `{setting}`"));
            }
            return self.check(
                &format!("request {method} setting {setting}"),
                &schema,
                Direction::Request,
                body,
            );
        }
        let Some(request_body) = op.definition.get("requestBody") else {
            return match body {
                Some(_) if method != "DELETE" => {
                    Err(format!("{method} {} takes no body", op.template))
                }
                _ => Ok(()),
            };
        };
        let request_body = self.resolve(request_body, Direction::Request);
        let schema = request_body.pointer("/content/application~1json/schema");
        let required = request_body.get("required").and_then(Value::as_bool) == Some(true);
        match (schema, body) {
            (Some(schema), Some(body)) => self.check(
                &format!("request {method} {}", op.template),
                schema,
                Direction::Request,
                body,
            ),
            (_, None) if required && method != "DELETE" => {
                Err(format!("{method} {} needs a JSON body", op.template))
            }
            _ => Ok(()),
        }
    }

    /// Checks a response body for `status`.
    pub(crate) fn check_response(
        &self,
        op: &Operation<'_>,
        method: &str,
        status: u16,
        body: &Value,
    ) -> Result<(), String> {
        let Some(responses) = op.definition.get("responses") else {
            return Ok(());
        };
        let key = if (200..300).contains(&status) {
            "200"
        } else {
            "4XX"
        };
        let response = responses
            .get(key)
            .or_else(|| responses.get(key.to_ascii_lowercase()))
            .or_else(|| responses.get("default"));
        let Some(response) = response else {
            return Err(format!(
                "{method} {}: no response {status} in the spec",
                op.template
            ));
        };
        let response = self.resolve(response, Direction::Response);
        let Some(mut schema) = response.pointer("/content/application~1json/schema") else {
            return Ok(());
        };
        if key == "4XX" {
            schema = failure_member(schema).unwrap_or(schema);
        }
        self.check(
            &format!("response {status} {method} {}", op.template),
            schema,
            Direction::Response,
            body,
        )
    }

    /// Checks query parameters: each must be declared, its value valid for its schema.
    pub(crate) fn check_query(
        &self,
        op: &Operation<'_>,
        method: &str,
        query: &[(String, String)],
    ) -> Result<(), String> {
        let params: Vec<&Value> = op
            .definition
            .get("parameters")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|p| self.resolve(p, Direction::Request))
            .filter(|p| p.get("in").and_then(Value::as_str) == Some("query"))
            .collect();
        for (name, value) in query {
            let Some(param) = params
                .iter()
                .find(|p| p.get("name").and_then(Value::as_str) == Some(name))
            else {
                return Err(format!(
                    "{method} {}: unknown query parameter `{name}`",
                    op.template
                ));
            };
            let schema = param.get("schema").cloned().unwrap_or(Value::Null);
            let wants_number = self.wants_number(&schema);
            let instance = if wants_number {
                value
                    .parse::<i64>()
                    .ok()
                    .map(serde_json::Number::from)
                    .or_else(|| {
                        value
                            .parse::<f64>()
                            .ok()
                            .and_then(serde_json::Number::from_f64)
                    })
                    .map(Value::Number)
                    .ok_or_else(|| format!("query parameter `{name}`: `{value}` is not a number"))?
            } else {
                Value::String(value.clone())
            };
            self.check(
                &format!("query {method} {} {name}", op.template),
                &schema,
                Direction::Request,
                &instance,
            )?;
        }
        Ok(())
    }

    fn wants_number(&self, schema: &Value) -> bool {
        let schema = self.resolve(schema, Direction::Request);
        let schema = match schema.pointer("/allOf/0") {
            Some(first) => self.resolve(first, Direction::Request),
            None => schema,
        };
        matches!(
            schema.get("type").and_then(Value::as_str),
            Some("number" | "integer")
        )
    }
}

/// The `*-common-failure` member of an `allOf` failure schema (the DNS quirk).
fn failure_member(schema: &Value) -> Option<&Value> {
    schema.get("allOf")?.as_array()?.iter().find(|member| {
        member
            .get("$ref")
            .and_then(Value::as_str)
            .is_some_and(|r| r.ends_with("-common-failure"))
    })
}

/// `nullable: true` → `type: [T, "null"]` (and `null` in `enum`), everywhere.
fn nullable_to_json_schema(value: &mut Value) {
    match value {
        Value::Object(map) => {
            if map.get("nullable") == Some(&Value::Bool(true)) {
                if let Some(Value::String(t)) = map.get("type").cloned() {
                    map.insert("type".into(), json!([t, "null"]));
                }
                if let Some(Value::Array(values)) = map.get_mut("enum")
                    && !values.contains(&Value::Null)
                {
                    values.push(Value::Null);
                }
            }
            map.values_mut().for_each(nullable_to_json_schema);
        }
        Value::Array(items) => items.iter_mut().for_each(nullable_to_json_schema),
        _ => {}
    }
}

fn is_read_only(schema: &Value) -> bool {
    schema.get("readOnly") == Some(&Value::Bool(true))
        || schema
            .get("allOf")
            .and_then(Value::as_array)
            .is_some_and(|members| members.iter().any(is_read_only))
}

/// Names of properties declared `readOnly` somewhere.
fn collect_read_only(value: &Value, names: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::Object(props)) = map.get("properties") {
                for (name, schema) in props {
                    if is_read_only(schema) {
                        names.insert(name.clone());
                    }
                }
            }
            map.values().for_each(|v| collect_read_only(v, names));
        }
        Value::Array(items) => items.iter().for_each(|v| collect_read_only(v, names)),
        _ => {}
    }
}

fn drop_required(value: &mut Value, names: &BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::Array(required)) = map.get_mut("required") {
                required.retain(|r| r.as_str().is_none_or(|n| !names.contains(n)));
            }
            map.values_mut().for_each(|v| drop_required(v, names));
        }
        Value::Array(items) => items.iter_mut().for_each(|v| drop_required(v, names)),
        _ => {}
    }
}
