//! The pages both roles have: log in, sign up, log out. They differ only in the service
//! they call and the cookies they set, so they are written once over [`Accounts`].

use std::future::Future;
use std::sync::Arc;

use agora_domain::{Role, UserId};
use agora_proto::ApiError;
use agora_proto::messages::{OpId, new_op_id};
use askama::Template;
use axum::body::Bytes;
use axum::extract::{OriginalUri, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use sha2::Digest as _;

use super::{
    Cookies, Nav, Refusal, cookie, csrf_token, is_signed_form_value, over_tls, page, plain,
    read_form, same_secret, set_cookie, signed_form_value,
};
use crate::buyer::BuyerFrontend;
use crate::seller::SellerFrontend;
use crate::upstream::Upstream;

/// What the account pages need of a role's service: its role and its database
/// connections; the calls themselves are the same for both.
pub trait Accounts: Send + Sync + 'static {
    /// Whose pages these are.
    const ROLE: Role;
    /// `true` for the seller's service.
    const SELLER: bool = matches!(Self::ROLE, Role::Seller);
    /// The role's cookies.
    const COOKIES: Cookies;
    /// The service's database connections.
    fn upstream(&self) -> &Upstream;
    /// The key the login and sign-up forms' values are signed with.
    fn form_key(&self) -> &ring::hmac::Key {
        self.upstream().form_key()
    }
    /// CreateAccount.
    fn create_account(
        &self,
        op: OpId,
        username: String,
        password: String,
        name: String,
    ) -> impl Future<Output = Result<UserId, ApiError>> + Send {
        self.upstream().create_account(op, Self::ROLE, username, password, name)
    }
    /// Login.
    fn login(
        &self,
        username: String,
        password: String,
    ) -> impl Future<Output = Result<(String, UserId), ApiError>> + Send {
        self.upstream().login(Self::ROLE, username, password)
    }
    /// Logout. A form sent again is a new Logout (its answer is `not_logged_in`, which the
    /// page takes as done).
    fn logout(&self, session: String) -> impl Future<Output = Result<(), ApiError>> + Send {
        self.upstream().logout(new_op_id(), session, Self::ROLE)
    }
}

impl Accounts for SellerFrontend {
    const ROLE: Role = Role::Seller;
    const COOKIES: Cookies = super::SELLER_COOKIES;
    fn upstream(&self) -> &Upstream {
        SellerFrontend::upstream(self)
    }
}

impl Accounts for BuyerFrontend {
    const ROLE: Role = Role::Buyer;
    const COOKIES: Cookies = super::BUYER_COOKIES;
    fn upstream(&self) -> &Upstream {
        BuyerFrontend::upstream(self)
    }
}

/// The login page: a login form and a sign-up form.
#[derive(Template)]
#[template(path = "login.html")]
pub struct LoginPage {
    nav: Nav,
    /// The double-submit CSRF value both forms carry.
    csrf: String,
    /// Why the user is here: their session ended.
    expired: bool,
    login_username: String,
    login_error: Option<String>,
    signup_username: String,
    signup_name: String,
    signup_error: Option<String>,
}

impl LoginPage {
    fn new<S: Accounts>(csrf: String) -> LoginPage {
        LoginPage {
            nav: Nav::new(S::SELLER, None),
            csrf,
            expired: false,
            login_username: String::new(),
            login_error: None,
            signup_username: String::new(),
            signup_name: String::new(),
            signup_error: None,
        }
    }
}

/// The login form's fields.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct LoginForm {
    csrf: String,
    username: String,
    password: String,
}

/// The sign-up form's fields.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct SignupForm {
    csrf: String,
    username: String,
    name: String,
    password: String,
}

/// The double-submit value of this browser, if it holds one signed by the frontends, or
/// a new one to set.
fn anonymous_csrf(
    key: &ring::hmac::Key,
    headers: &HeaderMap,
    cookies: Cookies,
    secure: bool,
) -> (String, bool) {
    match cookie(headers, cookies.csrf_name(secure)) {
        Some(value) if is_signed_form_value(key, value) => (value.to_owned(), false),
        _ => (signed_form_value(key), true),
    }
}

/// The login page as a response, setting the double-submit cookie if it is new.
fn login_response<S: Accounts>(
    status: StatusCode,
    login: &LoginPage,
    fresh: bool,
    secure: bool,
) -> Response {
    let mut response = page(status, login);
    if fresh {
        let value = set_cookie(S::COOKIES.csrf_name(secure), Some(&login.csrf), secure);
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

/// Checks a login or sign-up form's double-submit value: its cookie must hold a value the
/// frontends signed (one a page of theirs set, not one planted by someone else), and the
/// form must carry the same.
fn check_anonymous<S: Accounts>(
    front: &S,
    headers: &HeaderMap,
    sent: &str,
) -> Result<String, Refusal> {
    match cookie(headers, S::COOKIES.csrf_name(over_tls(headers))) {
        Some(expected)
            if is_signed_form_value(front.form_key(), expected) && same_secret(expected, sent) =>
        {
            Ok(expected.to_owned())
        }
        _ => Err(Refusal::Forged { seller: S::SELLER }),
    }
}

/// GET /login. A user already logged in goes to the start page.
pub async fn login_page<S: Accounts>(
    State(front): State<Arc<S>>,
    headers: HeaderMap,
    uri: OriginalUri,
) -> Response {
    let secure = over_tls(&headers);
    if cookie(&headers, S::COOKIES.session_name(secure)).is_some() && uri.query().is_none() {
        return Redirect::to("/").into_response();
    }
    let (csrf, fresh) = anonymous_csrf(front.form_key(), &headers, S::COOKIES, secure);
    let mut login = LoginPage::new::<S>(csrf);
    login.expired = uri.query().is_some_and(|q| q.contains("expired=1"));
    login_response::<S>(StatusCode::OK, &login, fresh, secure)
}

/// A new session: its cookie, and off to the start page.
fn logged_in<S: Accounts>(session: &str, secure: bool) -> Response {
    let mut response = Redirect::to("/").into_response();
    let value = set_cookie(S::COOKIES.session_name(secure), Some(session), secure);
    response.headers_mut().append(header::SET_COOKIE, value);
    response
}

/// POST /login.
pub async fn login<S: Accounts>(
    State(front): State<Arc<S>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Refusal> {
    let form: LoginForm = read_form(S::SELLER, &headers, &body)?;
    let csrf = check_anonymous(front.as_ref(), &headers, &form.csrf)?;
    let secure = over_tls(&headers);
    match front.login(form.username.trim().to_owned(), form.password).await {
        Ok((session, _)) => Ok(logged_in::<S>(&session, secure)),
        Err(error) => {
            let mut again = LoginPage::new::<S>(csrf);
            again.login_username = form.username;
            again.login_error = Some(plain(&error));
            Ok(login_response::<S>(super::status_of(error.code), &again, false, secure))
        }
    }
}

/// POST /signup: creates the account, then logs it in.
pub async fn signup<S: Accounts>(
    State(front): State<Arc<S>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Refusal> {
    let form: SignupForm = read_form(S::SELLER, &headers, &body)?;
    let csrf = check_anonymous(front.as_ref(), &headers, &form.csrf)?;
    let secure = over_tls(&headers);
    let username = form.username.trim().to_owned();
    // A resent form (a double click) makes one account: the op id is the form's.
    let op = op_of(&csrf, &username);
    let created =
        front.create_account(op, username.clone(), form.password.clone(), form.name.clone()).await;
    let result = match created {
        Ok(_) => front.login(username, form.password).await.map(|(session, _)| session),
        Err(e) => Err(e),
    };
    match result {
        Ok(session) => Ok(logged_in::<S>(&session, secure)),
        Err(error) => {
            let mut again = LoginPage::new::<S>(csrf);
            again.signup_username = form.username;
            again.signup_name = form.name;
            again.signup_error = Some(plain(&error));
            Ok(login_response::<S>(super::status_of(error.code), &again, false, secure))
        }
    }
}

/// The op id of a sign-up: the same for the same browser and username.
fn op_of(csrf: &str, username: &str) -> OpId {
    let digest = sha2::Sha256::digest(format!("agora-signup\0{csrf}\0{username}").as_bytes());
    let mut op = [0u8; 16];
    op.copy_from_slice(&digest[..16]);
    op[0] |= 1;
    op
}

/// The logout form's fields.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct LogoutForm {
    csrf: String,
}

/// POST /logout: ends the session (if it is still live) and forgets the cookie.
pub async fn logout<S: Accounts>(
    State(front): State<Arc<S>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Refusal> {
    let form: LogoutForm = read_form(S::SELLER, &headers, &body)?;
    let secure = over_tls(&headers);
    let Some(session) = cookie(&headers, S::COOKIES.session_name(secure)) else {
        return Ok(Redirect::to("/login").into_response());
    };
    if !same_secret(&csrf_token(session), &form.csrf) {
        return Err(Refusal::Forged { seller: S::SELLER });
    }
    if let Err(error) = front.logout(session.to_owned()).await
        && !super::needs_login(&error)
    {
        return Err(Refusal::Api { seller: S::SELLER, session: Some(session.to_owned()), error });
    }
    let mut response = Redirect::to("/login").into_response();
    let gone = set_cookie(S::COOKIES.session_name(secure), None, secure);
    response.headers_mut().append(header::SET_COOKIE, gone);
    Ok(response)
}
