//! The one error shape of the HTTP API, `{"error":{"code":…,"message":…}}`, and the
//! status code each [`ErrorCode`] maps to. Codes are the wire protocol's, so a script sees
//! the same `not_enough_units` over HTTP as the CLI's `--json` prints.

use agora_proto::{ApiError, ErrorCode};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A refusal or failure on its way to an HTTP client.
#[derive(Debug, Clone)]
pub struct Error {
    status: StatusCode,
    code: ErrorCode,
    message: String,
}

impl Error {
    /// An error with an explicit status, for the HTTP layer's own refusals (unknown route,
    /// body too large, ...) whose status says more than the code alone.
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        Error { status, code, message: message.into() }
    }

    /// A field broke a rule.
    pub fn invalid(message: impl Into<String>) -> Self {
        Error::new(StatusCode::BAD_REQUEST, ErrorCode::InvalidArgument, message)
    }

    /// No usable `Authorization` header.
    pub fn no_session() -> Self {
        Error::new(
            StatusCode::UNAUTHORIZED,
            ErrorCode::NotLoggedIn,
            "not logged in: send the session from login as `Authorization: Bearer <session>`",
        )
    }

    /// The HTTP status this error is answered with.
    pub fn status(&self) -> StatusCode {
        self.status
    }
}

/// The status that says what `code` means.
pub fn status_of(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::InvalidArgument | ErrorCode::BadRequest => StatusCode::BAD_REQUEST,
        ErrorCode::NotLoggedIn | ErrorCode::SessionExpired | ErrorCode::WrongCredentials => {
            StatusCode::UNAUTHORIZED
        }
        ErrorCode::PaymentDeclined => StatusCode::PAYMENT_REQUIRED,
        ErrorCode::NotYourItem => StatusCode::FORBIDDEN,
        ErrorCode::UnknownItem | ErrorCode::UnknownUser => StatusCode::NOT_FOUND,
        ErrorCode::NotEnoughUnits
        | ErrorCode::UsernameTaken
        | ErrorCode::Aborted
        | ErrorCode::PriceChanged
        | ErrorCode::OpReused => StatusCode::CONFLICT,
        // Down, busy, not sure yet, or a database between leaders: all are "try again
        // shortly".
        ErrorCode::Unavailable
        | ErrorCode::Overloaded
        | ErrorCode::PurchasePending
        | ErrorCode::NotLeader => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::Timeout => StatusCode::GATEWAY_TIMEOUT,
        // A database refusing a frontend is our own misconfiguration, not the user's.
        ErrorCode::Internal | ErrorCode::Protocol | ErrorCode::Forbidden => {
            StatusCode::INTERNAL_SERVER_ERROR
        }
    }
}

/// The code an error response without one is given, from its status alone (axum's own
/// 404 and 405, the request timeout).
pub fn code_of(status: StatusCode) -> ErrorCode {
    match status {
        StatusCode::UNAUTHORIZED => ErrorCode::NotLoggedIn,
        StatusCode::REQUEST_TIMEOUT | StatusCode::GATEWAY_TIMEOUT => ErrorCode::Timeout,
        StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS => ErrorCode::Overloaded,
        s if s.is_server_error() => ErrorCode::Internal,
        _ => ErrorCode::BadRequest,
    }
}

impl From<ApiError> for Error {
    fn from(e: ApiError) -> Self {
        Error { status: status_of(e.code), code: e.code, message: e.message }
    }
}

impl From<agora_domain::Invalid> for Error {
    fn from(e: agora_domain::Invalid) -> Self {
        ApiError::from(e).into()
    }
}

/// The body of every error response.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// A stable code for programs and a message for people.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// One of the codes in docs/protocol.md: `invalid_argument`, `not_logged_in`,
    /// `session_expired`, `unknown_item`, `not_your_item`, `not_enough_units`,
    /// `username_taken`, `wrong_credentials`, `unknown_user`, `unavailable`, `timeout`,
    /// `bad_request`, `overloaded`, `internal`, ...
    #[schema(example = "not_enough_units")]
    pub code: String,
    /// What happened and, for bad input, which field broke which rule.
    #[schema(example = "not enough units of 3:17: 2 available")]
    pub message: String,
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let message = if self.code == ErrorCode::Internal || self.code == ErrorCode::Protocol {
            // The detail may name internals; it goes to the log, the caller gets a summary.
            tracing::error!(code = %self.code, detail = %self.message, "internal error");
            "internal error; the details are in the server's log".to_owned()
        } else {
            self.message
        };
        let body =
            ErrorBody { error: ErrorDetail { code: self.code.as_str().to_owned(), message } };
        let mut response = (self.status, axum::Json(body)).into_response();
        let headers = response.headers_mut();
        // Also where no middleware runs (a refusal at the connection cap).
        headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if self.status == StatusCode::UNAUTHORIZED {
            // RFC 6750: say which scheme to use.
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every code's status, as docs/http.md ("Status codes") promises it.
    const DOCUMENTED: [(ErrorCode, u16); 22] = [
        (ErrorCode::InvalidArgument, 400),
        (ErrorCode::BadRequest, 400),
        (ErrorCode::NotLoggedIn, 401),
        (ErrorCode::SessionExpired, 401),
        (ErrorCode::WrongCredentials, 401),
        (ErrorCode::PaymentDeclined, 402),
        (ErrorCode::NotYourItem, 403),
        (ErrorCode::UnknownItem, 404),
        (ErrorCode::UnknownUser, 404),
        (ErrorCode::NotEnoughUnits, 409),
        (ErrorCode::UsernameTaken, 409),
        (ErrorCode::Aborted, 409),
        (ErrorCode::PriceChanged, 409),
        (ErrorCode::OpReused, 409),
        (ErrorCode::Internal, 500),
        (ErrorCode::Protocol, 500),
        (ErrorCode::Forbidden, 500),
        (ErrorCode::Unavailable, 503),
        (ErrorCode::Overloaded, 503),
        (ErrorCode::PurchasePending, 503),
        (ErrorCode::NotLeader, 503),
        (ErrorCode::Timeout, 504),
    ];

    #[test]
    fn each_class_of_error_has_its_status() {
        // From the list of every code, so that a new code without a documented status fails.
        for code in ErrorCode::ALL {
            let (_, status) = DOCUMENTED
                .into_iter()
                .find(|(documented, _)| *documented == code)
                .unwrap_or_else(|| panic!("{code} has no status in the table"));
            assert_eq!(status_of(code).as_u16(), status, "{code}");
        }
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Body {
        price: String,
        quantity: u32,
    }

    /// What `decode` refuses `body` with: status, code and message.
    fn refusal(body: &[u8]) -> (u16, ErrorCode, String) {
        let e = crate::http::extract::decode::<Body>(body).expect_err("refused");
        (e.status.as_u16(), e.code, e.message)
    }

    #[test]
    fn a_bad_body_is_refused_naming_the_field() {
        let (status, code, message) = refusal(br#"{"price": 12, "quantity": 1}"#);
        assert_eq!((status, code), (400, ErrorCode::InvalidArgument));
        assert_eq!(
            message,
            "invalid price: invalid type: integer `12`, expected a string at line 1 column 12"
        );
        let (status, code, message) = refusal(br#"{"price": "12"}"#);
        assert_eq!((status, code), (400, ErrorCode::InvalidArgument));
        assert_eq!(message, "invalid body: missing field `quantity` at line 1 column 15");
        let (status, code, message) = refusal(br#"{"price": "12", "quantity": 1} x"#);
        assert_eq!((status, code), (400, ErrorCode::BadRequest));
        assert_eq!(message, "the body is not valid JSON: trailing characters at line 1 column 32");
    }
}
