//! What both servers' routes share: the routes both have (CreateAccount, Login, Logout
//! and the health checks).
//!
//! Those routes differ between the servers only in their paths, texts and types, but
//! `#[utoipa::path]` needs those written out on each handler and cannot read them from a
//! generic parameter. So [`shared_routes!`] holds the one definition, and `seller.rs` and
//! `buyer.rs` each invoke it with their own.

/// Writes a module `shared` into the invoking module: the handlers `create_account`,
/// `login`, `logout`, `healthz` and `readyz`, with their OpenAPI annotations, for one server.
///
/// Types are named as the invoking module has them in scope. The doc comment above each
/// route becomes its handler's, from which utoipa takes the operation's summary.
///
/// - `front`: the server's service; the routes call its `create_account`, `login`,
///   `logout` and `ping`.
/// - `create_account`: the route's path `=>` the description of its 201 answer.
/// - `login`: the route's path `=>` the type of its answer, with the field that holds the
///   account id.
/// - `logout`: nothing; its path is `/v1/sessions/current` on both servers.
macro_rules! shared_routes {
    (
        front: $Front:ident,
        $(#[doc = $create_doc:tt])*
        create_account: $accounts:tt => $created:tt,
        $(#[doc = $login_doc:tt])*
        login: $sessions:tt => $Session:ident { $id:ident },
        $(#[doc = $logout_doc:tt])*
        logout $(,)?
    ) => {
        /// The routes this server has in common with the other, from `shared_routes!`.
        mod shared {
            use std::sync::Arc;

            use axum::extract::State;
            use axum::http::StatusCode;

            use super::{$Front, $Session};
            use crate::http::error::ErrorBody;
            use crate::http::extract::{IdempotencyKey, Json, Session};
            use crate::http::model::{
                AccountCreated, Credentials, Health, MutationHeaders, NewAccount,
            };
            use crate::http::{BodyFailures, Failures, Out};

            type Front = State<Arc<$Front>>;

            $(#[doc = $create_doc])*
            #[utoipa::path(
                post, path = $accounts, tag = "accounts",
                params(MutationHeaders),
                request_body = NewAccount,
                responses(
                    (status = 201, description = $created, body = AccountCreated),
                    (
                        status = 400,
                        description = "A field broke a rule (`invalid_argument`)",
                        body = ErrorBody
                    ),
                    (
                        status = 409,
                        description = "The username is taken (`username_taken`), or the \
                                       Idempotency-Key was already used for a different \
                                       request (`op_reused`)",
                        body = ErrorBody
                    ),
                    BodyFailures,
                    Failures
                )
            )]
            pub(super) async fn create_account(
                State(front): Front,
                key: IdempotencyKey,
                Json(body): Json<NewAccount>,
            ) -> Out<(StatusCode, axum::Json<AccountCreated>)> {
                // Without a session, a key belongs to the username it creates.
                let op = key.op(stringify!($Front), "create-account", &body.username.to_ascii_lowercase());
                let name = body.name.unwrap_or_default();
                let id = front.create_account(op, body.username, body.password, name).await?;
                Ok((StatusCode::CREATED, axum::Json(AccountCreated { id })))
            }

            $(#[doc = $login_doc])*
            #[utoipa::path(
                post, path = $sessions, tag = "accounts",
                request_body = Credentials,
                responses(
                    (
                        status = 201,
                        description = "Logged in; send `session` as a bearer token",
                        body = $Session
                    ),
                    (status = 400, description = "The body is malformed", body = ErrorBody),
                    (
                        status = 401,
                        description = "Wrong username or password (`wrong_credentials`)",
                        body = ErrorBody
                    ),
                    BodyFailures,
                    Failures
                )
            )]
            pub(super) async fn login(
                State(front): Front,
                Json(body): Json<Credentials>,
            ) -> Out<(StatusCode, axum::Json<$Session>)> {
                let (session, id) = front.login(body.username, body.password).await?;
                Ok((StatusCode::CREATED, axum::Json($Session { session, $id: id })))
            }

            $(#[doc = $logout_doc])*
            #[utoipa::path(
                delete, path = "/v1/sessions/current", tag = "accounts",
                security(("session" = [])),
                params(MutationHeaders),
                responses(
                    (status = 204, description = "Logged out"),
                    (
                        status = 401,
                        description = "No such session (`not_logged_in`)",
                        body = ErrorBody
                    ),
                    Failures
                )
            )]
            pub(super) async fn logout(
                State(front): Front,
                Session(session): Session,
                key: IdempotencyKey,
            ) -> Out<StatusCode> {
                let op = key.op(stringify!($Front), "logout", &session);
                front.logout(op, session).await?;
                Ok(StatusCode::NO_CONTENT)
            }

            /// Liveness: the process is up and serving.
            #[utoipa::path(
                get, path = "/healthz", tag = "health",
                responses((status = 200, description = "Up", body = Health))
            )]
            pub(super) async fn healthz() -> axum::Json<Health> {
                axum::Json(Health { status: "ok".into() })
            }

            /// Readiness: both databases answered a ping just now.
            #[utoipa::path(
                get, path = "/readyz", tag = "health",
                responses(
                    (status = 200, description = "Ready", body = Health),
                    Failures
                )
            )]
            pub(super) async fn readyz(State(front): Front) -> Out<axum::Json<Health>> {
                front.ping(true).await?;
                Ok(axum::Json(Health { status: "ready".into() }))
            }
        }
    };
}

pub(super) use shared_routes;
