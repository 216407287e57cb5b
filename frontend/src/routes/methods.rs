//! What a request to a known path with a method it does not serve gets:
//! 405 with `Allow` (RFC 9110 §15.5.6), not 404. The table is read from
//! the generated API document, so it lists every route and nothing else.

use actix_web::http::header::ALLOW;
use actix_web::{HttpRequest, HttpResponse};
use serde_json::json;

#[derive(Debug, Clone, PartialEq)]
enum Segment {
    Literal(String),
    /// `{name}`: one segment.
    Param,
    /// `{path}` at the end: the rest, nested folders included
    /// (`/files/{path}`).
    Tail,
}

/// Each documented path with the methods it serves.
#[derive(Debug, Clone, Default)]
pub struct Methods {
    routes: Vec<(Vec<Segment>, Vec<&'static str>)>,
}

impl Methods {
    pub fn from_document(doc: &utoipa::openapi::OpenApi) -> Self {
        let routes = doc
            .paths
            .paths
            .iter()
            .map(|(path, item)| {
                let methods: Vec<&'static str> = [
                    ("GET", item.get.is_some()),
                    ("PUT", item.put.is_some()),
                    ("POST", item.post.is_some()),
                    ("DELETE", item.delete.is_some()),
                    ("PATCH", item.patch.is_some()),
                ]
                .into_iter()
                .filter_map(|(m, served)| served.then_some(m))
                .collect();
                (segments(path), methods)
            })
            .collect();
        Self { routes }
    }

    /// The methods `path` is served with, if any route has its shape.
    pub fn allowed(&self, path: &str) -> Vec<&'static str> {
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        let mut allowed: Vec<&'static str> = self
            .routes
            .iter()
            .filter(|(pattern, _)| matches(pattern, &parts))
            .flat_map(|(_, methods)| methods.iter().copied())
            .collect();
        allowed.sort_unstable();
        allowed.dedup();
        allowed
    }

    /// 405 with `Allow` for a known path, else the JSON 404.
    pub fn answer(&self, req: &HttpRequest) -> HttpResponse {
        let allowed = self.allowed(req.path());
        if allowed.is_empty() {
            return HttpResponse::NotFound().json(json!({
                "error": "not_found",
                "message": "no such route; see /api/openapi.json",
            }));
        }
        let allow = allowed.join(", ");
        HttpResponse::MethodNotAllowed()
            .insert_header((ALLOW, allow.clone()))
            .json(json!({
                "error": "method_not_allowed",
                "message": format!("{} is not served here; this path takes {allow}", req.method()),
            }))
    }
}

fn segments(path: &str) -> Vec<Segment> {
    path.trim_matches('/')
        .split('/')
        .map(|s| {
            if s == "{path}" {
                Segment::Tail
            } else if s.starts_with('{') && s.ends_with('}') {
                Segment::Param
            } else {
                Segment::Literal(s.to_string())
            }
        })
        .collect()
}

fn matches(pattern: &[Segment], parts: &[&str]) -> bool {
    for (i, segment) in pattern.iter().enumerate() {
        match (segment, parts.get(i)) {
            (_, None) => return false,
            (Segment::Literal(l), Some(p)) if l != p => return false,
            (Segment::Param | Segment::Tail, Some(&"")) => return false,
            (Segment::Tail, Some(_)) => return true,
            _ => {}
        }
    }
    pattern.len() == parts.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_paths_answer_their_methods() {
        let methods = Methods::from_document(&crate::openapi::document());
        let rows: [(&str, &[&str]); 8] = [
            ("/api/jobs", &["GET", "POST"]),
            (
                "/api/jobs/6f1c8a5e-2b7d-4c1e-9f3a-0a1b2c3d4e5f",
                &["DELETE", "GET"],
            ),
            ("/api/jobs/x/files/a/b/c.txt", &["GET"]),
            ("/api/addJob", &["POST"]),
            ("/health", &["GET"]),
            ("/api/nothing", &[]),
            ("/api/jobs/x/unknown", &[]),
            ("/", &[]),
        ];
        for (path, want) in rows {
            assert_eq!(methods.allowed(path), want.to_vec(), "{path}");
        }
    }
}
