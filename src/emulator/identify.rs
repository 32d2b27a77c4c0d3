//! The emulator's `/identify` and `/groupidentify` routes: user and group properties, checked
//! and recorded as Amplitude's Identify API takes them.

use super::*;

impl App {
    /// Identify and Group Identify: form-encoded `api_key` and `identification`.
    pub(super) fn identify(
        &self,
        route: &str,
        headers: &HeaderMap,
        body: &Bytes,
        group: bool,
    ) -> Response {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let response = self.identify_locked(&mut inner, headers, body, group);
        inner.count(route, headers, response.status().as_u16());
        response
    }

    fn identify_locked(
        &self,
        inner: &mut Inner,
        headers: &HeaderMap,
        body: &Bytes,
        group: bool,
    ) -> Response {
        if let Some(r) = self.fault_before(inner) {
            return r;
        }
        let Some(bytes) = body_bytes(headers, body) else {
            return undecodable();
        };
        if bytes.len() > self.config.max_body_bytes {
            return reply(
                StatusCode::PAYLOAD_TOO_LARGE,
                json!({"code": 413, "error": "Payload too large"}),
            );
        }
        let form: HashMap<String, String> =
            serde_urlencoded::from_bytes(&bytes).unwrap_or_default();
        if let Some(r) = self.key_problem(form.get("api_key").map(String::as_str)) {
            return r;
        }
        let items = match form
            .get("identification")
            .map(|t| serde_json::from_str::<Value>(t))
        {
            Some(Ok(Value::Array(a))) => a,
            Some(Ok(o @ Value::Object(_))) => vec![o],
            _ => {
                return reply(
                    StatusCode::BAD_REQUEST,
                    json!({"code": 400, "error": "missing_event"}),
                )
            }
        };
        let limit = if group { 1024 } else { self.config.max_events };
        if items.len() > limit {
            return reply(
                StatusCode::PAYLOAD_TOO_LARGE,
                json!({"code": 413, "error": "Payload too large"}),
            );
        }
        let valid = items.iter().all(|i| match i {
            Value::Object(o) if group => {
                o.get("group_type").is_some_and(Value::is_string)
                    && o.get("group_value").is_some_and(Value::is_string)
                    && o.get("group_properties").is_some_and(Value::is_object)
            }
            Value::Object(o) => id_of(o).is_some(),
            _ => false,
        });
        if !valid {
            return reply(
                StatusCode::BAD_REQUEST,
                json!({"code": 400, "error": "missing_event"}),
            );
        }
        if group {
            inner.stats.group_identifies += items.len() as u64;
            self.append("groupidentify.jsonl", &items);
        } else {
            inner.stats.identifies += items.len() as u64;
            self.append("identify.jsonl", &items);
        }
        if let Some(r) = self.fault_after(inner) {
            return r;
        }
        (StatusCode::OK, "success").into_response()
    }
}
