//! The answers many routes share, as reusable response components. Error
//! answers carry the `Error` schema and an example of what the API really
//! says.

use std::collections::BTreeMap;

use serde_json::{json, Value};
use utoipa::openapi::{
    ContentBuilder, HeaderBuilder, ObjectBuilder, Ref, RefOr, Response, ResponseBuilder, Type,
};
use utoipa::ToResponse;

/// A response component named after its type.
macro_rules! component {
    ($name:ident, $build:expr) => {
        pub struct $name;

        impl<'s> ToResponse<'s> for $name {
            fn response() -> (&'s str, RefOr<Response>) {
                (stringify!($name), RefOr::T($build))
            }
        }
    };
}

fn json_of(schema: &str) -> ContentBuilder {
    ContentBuilder::new().schema(Some(Ref::from_schema_name(schema)))
}

/// A JSON answer of `schema`, with one example or several named ones.
fn answer(description: &str, schema: &str, examples: &[(&str, Value)]) -> Response {
    let content = match examples {
        [(_, only)] => json_of(schema).example(Some(only.clone())),
        many => json_of(schema).examples_from_iter(many.iter().map(|(name, value)| {
            (
                name.to_string(),
                utoipa::openapi::example::ExampleBuilder::new()
                    .value(Some(value.clone()))
                    .build(),
            )
        })),
    };
    ResponseBuilder::new()
        .description(description)
        .content("application/json", content.build())
        .build()
}

/// An `Error` answer with its examples.
fn error(description: &str, examples: &[(&str, Value)]) -> Response {
    answer(description, "Error", examples)
}

/// The `WWW-Authenticate: Bearer` header of a 401.
fn www_authenticate(response: Response) -> Response {
    let header = HeaderBuilder::new()
        .schema(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(["Bearer"])),
        )
        .build();
    let mut response = response;
    response.headers.insert("WWW-Authenticate".into(), header);
    response
}

fn body(description: &str, schema: &str) -> Response {
    answer(description, schema, &[])
}

component!(
    Unauthorized,
    www_authenticate(error(
        "No `Authorization: Bearer` header, or the token is malformed, expired, not yet valid, signed by an unknown key, issued by another issuer, issued to another client, or not an access token.",
        &[("example", json!({"error": "unauthorized", "message": "invalid bearer token: expired"}))],
    ))
);

component!(
    LoginRefused,
    www_authenticate(error(
        "The identity provider refused the username and password.",
        &[(
            "example",
            json!({"error": "unauthorized", "message": "invalid username or password"})
        )],
    ))
);

component!(
    JobNotFound,
    error(
        "No such job for the caller: an id that is not a UUID, an unknown id and another user's job all get this same answer.",
        &[("example", json!({"error": "not_found", "message": "no such job"}))],
    )
);

component!(
    Unavailable,
    error(
        "A backing service (MongoDB, Kafka, object storage or the identity provider) is unreachable or failing. Nothing was changed; retry shortly.",
        &[("example", json!({"error": "unavailable", "message": "the job database is unavailable; try again shortly"}))],
    )
);

component!(
    BadQuery,
    error(
        "A query parameter could not be parsed or is out of range.",
        &[(
            "example",
            json!({"error": "bad_request", "message": "`per_page` must be between 1 and 100"})
        )],
    )
);

component!(
    BadSubmission,
    error(
        "The body is not valid JSON (`bad_request`) or not a valid job (`invalid_job`: missing or non-string `url`, invalid URL, scheme or host not allowed, URL with a query or fragment or without a path, `args` of the wrong type or with unbalanced quotes, too many or too large `args`, NUL in `args`, `config` of the wrong type or too large). Nothing is recorded or queued.",
        &[("malformed", json!({"error": "bad_request", "message": "the body is not valid JSON: EOF while parsing an object at line 1 column 8"})), ("scheme", json!({"error": "invalid_job", "message": "`url` scheme `http` is not allowed; use https://"})), ("missing", json!({"error": "invalid_job", "message": "`url` is required: the git repository to run"}))],
    )
);

component!(
    PayloadTooLarge,
    error(
        "The request body is larger than the limit.",
        &[(
            "example",
            json!({"error": "payload_too_large", "message": "the request body is larger than 1048576 bytes"})
        )],
    )
);

component!(
    AlreadyFinished,
    error(
        "The job is already `succeeded`, `failed` or `cancelled`; nothing changes.",
        &[(
            "example",
            json!({"error": "conflict", "message": "the job is already succeeded; only queued or running jobs can be cancelled"})
        )],
    )
);

component!(
    FileNotFound,
    error(
        "No such job for the caller (see `JobNotFound`), or the job reported no output file with this name, or the file is not (yet) in object storage.",
        &[("example", json!({"error": "not_found", "message": "the job has no output file `missing.txt`"}))],
    )
);

component!(
    BadFileName,
    error(
        "The name is not a relative path inside the job's output folder: empty, longer than 1024 bytes, an absolute path, an empty, `.` or `..` segment (so `a//b`, `../x`, `trailing/`), a backslash or a control character.",
        &[("example", json!({"error": "bad_request", "message": "invalid file name: use a path relative to the job's output folder"}))],
    )
);

component!(
    Cancelled,
    body("The job was queued and is now `cancelled`.", "JobCancelled",)
);

component!(
    CancelRequested,
    body(
        "The job was running (or had just been taken by a worker): the cancellation is on its way to the worker, which stops the job's process group and records `cancelled`.",
        "CancelRequested",
    )
);

component!(Token, body("Logged in.", "TokenResponse",));

/// The `ETag` of a job's answer.
fn with_etag(mut response: Response) -> Response {
    let header = HeaderBuilder::new()
        .schema(ObjectBuilder::new().schema_type(Type::String))
        .description(Some("A strong tag of this answer (a hash of its body; the same on every replica). Send it back in `If-None-Match` to get a 304 while the job is unchanged."))
        .build();
    response.headers.insert("ETag".into(), header);
    response
}

component!(
    NotModified,
    with_etag(
        ResponseBuilder::new()
            .description("The job is unchanged since the answer whose `ETag` came in `If-None-Match` (weak comparison; `*` matches any). No body.")
            .build()
    )
);

component!(
    JobView,
    with_etag(answer(
        "The job.",
        "JobView",
        &[
            (
                "succeeded",
                json!({"id": "6f1c8a5e-2b7d-4c1e-9f3a-0a1b2c3d4e5f", "status": "succeeded", "outputFiles": ["http://127.0.0.1:8080/api/jobs/6f1c8a5e-2b7d-4c1e-9f3a-0a1b2c3d4e5f/files/result.csv", "http://127.0.0.1:8080/api/jobs/6f1c8a5e-2b7d-4c1e-9f3a-0a1b2c3d4e5f/files/plots/speed%20up.png"], "files": ["result.csv", "plots/speed up.png"], "logs": {"stdout": "http://127.0.0.1:8080/api/jobs/6f1c8a5e-2b7d-4c1e-9f3a-0a1b2c3d4e5f/logs?stream=stdout", "stderr": "http://127.0.0.1:8080/api/jobs/6f1c8a5e-2b7d-4c1e-9f3a-0a1b2c3d4e5f/logs?stream=stderr"}, "owner": "0b9d3f7e-51a2-4c8e-a3f0-7d2c1e9b8a64", "username": "alice", "url": "https://***@git.example.com/alice/heat-sim.git", "args": ["--steps", "1000", "--title", "two words"], "config": "{\"grid\":64}", "ref": "main", "commit": "3f2a9c1e8b7d6a5f4e3d2c1b0a9f8e7d6c5b4a39", "submittedAt": "2026-03-02T10:15:30.120Z", "startedAt": "2026-03-02T10:15:30.480Z", "finishedAt": "2026-03-02T10:15:42.903Z", "exitCode": 0, "error": null, "elapsedSeconds": 12.423, "workerId": "worker-7c9f", "attempt": 1}),
            ),
            (
                "queued",
                json!({"id": "6f1c8a5e-2b7d-4c1e-9f3a-0a1b2c3d4e5f", "status": "queued", "outputFiles": [], "files": [], "owner": "0b9d3f7e-51a2-4c8e-a3f0-7d2c1e9b8a64", "username": "alice", "url": "https://github.com/acme/heat-sim.git", "args": [], "config": null, "commit": null, "submittedAt": "2026-03-02T10:15:30.120Z", "startedAt": null, "finishedAt": null, "exitCode": null, "error": null, "elapsedSeconds": null, "workerId": null, "attempt": 0}),
            ),
        ],
    ))
);

component!(Download, {
    let disposition = HeaderBuilder::new()
        .schema(ObjectBuilder::new().schema_type(Type::String))
        .description(Some("`attachment; filename=\"<last path segment>\"`"))
        .build();
    let binary = ObjectBuilder::new().schema_type(Type::String).format(Some(
        utoipa::openapi::SchemaFormat::KnownFormat(utoipa::openapi::KnownFormat::Binary),
    ));
    ResponseBuilder::new()
        .description("The file, streamed from object storage. `Content-Type` is guessed from the file name (`application/octet-stream` when unknown).")
        .header("Content-Disposition", disposition)
        .content("*/*", ContentBuilder::new().schema(Some(binary)).build())
        .build()
});

/// The answers of routes that answer alike (a route and its compatibility
/// twin), as one list of references to the components above.
macro_rules! answers {
    ($name:ident: $($status:literal => $component:ident),+ $(,)?) => {
        pub struct $name;

        impl utoipa::IntoResponses for $name {
            fn responses() -> BTreeMap<String, RefOr<Response>> {
                // The name comes from the component itself, so a reference
                // cannot name a component that does not exist.
                [$(($status, <$component as ToResponse<'_>>::response().0)),+]
                    .into_iter()
                    .map(|(status, name)| (status.to_string(), RefOr::Ref(Ref::from_response_name(name))))
                    .collect()
            }
        }
    };
}

answers!(OneJob: "200" => JobView, "304" => NotModified, "401" => Unauthorized, "404" => JobNotFound, "503" => Unavailable);

answers!(CancelAnswers:
    "200" => Cancelled, "202" => CancelRequested, "401" => Unauthorized,
    "404" => JobNotFound, "409" => AlreadyFinished, "503" => Unavailable,
);

answers!(OutputFile:
    "200" => Download, "400" => BadFileName, "401" => Unauthorized,
    "404" => FileNotFound, "503" => Unavailable,
);
