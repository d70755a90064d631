//! The server-rendered pages of the authorization flow: sign-in, consent and errors. Every
//! value is HTML-escaped; pages are never cached, framed or given a referrer, and run no
//! script.

use axum::response::{Html, IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};

/// Escapes text for HTML content and double-quoted attributes.
pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;background:#f4f5f7;margin:0;\
    display:flex;justify-content:center;padding:4rem 1rem}\
    main{background:#fff;border-radius:8px;box-shadow:0 1px 4px #0002;padding:2rem;\
    max-width:26rem;width:100%}h1{font-size:1.3rem;margin-top:0}\
    label{display:block;margin:.8rem 0 .3rem}input[type=text],input[type=password]{\
    width:100%;box-sizing:border-box;padding:.5rem;font-size:1rem}\
    button{margin-top:1.2rem;padding:.55rem 1.2rem;font-size:1rem;border-radius:4px;\
    border:1px solid #888;cursor:pointer}button.primary,a.button{background:#1f5fbf;color:#fff;\
    border-color:#1f5fbf}a.button{display:inline-block;padding:.55rem 1.2rem;\
    border-radius:4px;text-decoration:none}.error{color:#a00}.muted{color:#666;font-size:.9rem}\
    ul{padding-left:1.2rem}li{margin:.3rem 0}";

fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>{title}</title><style>{STYLE}</style></head><body><main>{body}</main></body></html>",
        title = escape(title),
    );
    let mut response = (status, Html(html)).into_response();
    let h = response.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// An error the user sees (never redirected to the client).
pub(crate) fn error(status: StatusCode, title: &str, message: &str) -> Response {
    page(
        status,
        title,
        &format!(
            "<h1>{}</h1><p class=\"error\">{}</p>\
             <p class=\"muted\">Return to the application and try again.</p>",
            escape(title),
            escape(message)
        ),
    )
}

/// The page for a server failure.
pub(crate) fn server_error(error: &dyn std::fmt::Display) -> Response {
    tracing::error!(%error, "OAuth authorization page failed");
    self::error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Something went wrong",
        "The gateway could not complete the sign-in. Try again later.",
    )
}

/// What a scope lets the application do, in words.
fn describe_scope(scope: &str) -> String {
    match scope {
        "models" => "Call models through the gateway".to_owned(),
        "tools" => "Use tools (MCP servers) through the gateway".to_owned(),
        "admin" => "Administer the gateway: keys, users, teams and settings".to_owned(),
        other => format!("Scope “{other}”"),
    }
}

fn scope_list(scope: &str) -> String {
    let items: String = scope
        .split_ascii_whitespace()
        .map(|s| {
            format!(
                "<li><strong>{}</strong> — {}</li>",
                escape(s),
                escape(&describe_scope(s))
            )
        })
        .collect();
    format!("<ul>{items}</ul>")
}

/// Text from outside (a provider's error code) made fit for a log line: printable ASCII,
/// at most 100 characters.
pub(crate) fn sanitize(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .take(100)
        .collect()
}

/// The sign-in page: the username/password form posting to `local` (when local users may
/// sign in) and a "Sign in with …" link to `provider` (URL, name) when sign-in is delegated.
pub(crate) fn login(
    local: Option<&str>,
    provider: Option<(&str, &str)>,
    client_name: &str,
    request: &str,
    error: Option<&str>,
    username: &str,
) -> Response {
    let error = error
        .map(|e| format!("<p class=\"error\" role=\"alert\">{}</p>", escape(e)))
        .unwrap_or_default();
    let provider = provider
        .map(|(url, name)| {
            format!(
                "<p><a class=\"button primary\" id=\"sso\" href=\"{url}\">Sign in with {name}</a></p>",
                url = escape(url),
                name = escape(name),
            )
        })
        .unwrap_or_default();
    let separator = if local.is_some() && !provider.is_empty() {
        "<p class=\"muted\">or with a gateway account:</p>"
    } else {
        ""
    };
    let form = local
        .map(|action| {
            format!(
                "<form method=\"post\" action=\"{action}\">\
                 <input type=\"hidden\" name=\"request\" value=\"{request}\">\
                 <label for=\"username\">Username</label>\
                 <input type=\"text\" id=\"username\" name=\"username\" value=\"{username}\" \
                 autocomplete=\"username\" required autofocus>\
                 <label for=\"password\">Password</label>\
                 <input type=\"password\" id=\"password\" name=\"password\" \
                 autocomplete=\"current-password\" required>\
                 <button class=\"primary\" type=\"submit\">Sign in</button></form>",
                action = escape(action),
                request = escape(request),
                username = escape(username),
            )
        })
        .unwrap_or_default();
    page(
        StatusCode::OK,
        "Sign in",
        &format!(
            "<h1>Sign in to Portcullis</h1>\
             <p><strong>{client}</strong> wants to access the gateway on your behalf.</p>\
             {error}{provider}{separator}{form}",
            client = escape(client_name),
        ),
    )
}

/// The consent page.
pub(crate) fn consent(
    action: &str,
    client_name: &str,
    redirect_to: &str,
    username: &str,
    scope: &str,
    resource: Option<&str>,
    request: &str,
) -> Response {
    let resource = resource
        .map(|r| format!("<p>Only for <strong>{}</strong>.</p>", escape(r)))
        .unwrap_or_default();
    page(
        StatusCode::OK,
        "Authorize access",
        &format!(
            "<h1>Authorize {client}?</h1>\
             <p>Signed in as <strong>{user}</strong>.</p>\
             <p><strong>{client}</strong> asks to:</p>{scopes}{resource}\
             <p class=\"muted\">You will be sent back to {redirect}.</p>\
             <form method=\"post\" action=\"{action}\">\
             <input type=\"hidden\" name=\"request\" value=\"{request}\">\
             <button class=\"primary\" type=\"submit\" name=\"decision\" value=\"approve\">Allow</button> \
             <button type=\"submit\" name=\"decision\" value=\"deny\">Deny</button></form>",
            action = escape(action),
            client = escape(client_name),
            user = escape(username),
            scopes = scope_list(scope),
            redirect = escape(redirect_to),
            request = escape(request),
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_covers_markup_and_quotes() {
        assert_eq!(
            escape(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }
}
