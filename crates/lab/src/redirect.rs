//! ADMIN's second port (80 in production): plain HTTP that sends browsers to HTTPS, as the
//! real console's IIS binding does.

use std::net::IpAddr;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, HOST, LOCATION};
use hyper::{Request, Response, StatusCode};
use tokio::net::TcpListener;

use crate::https::text;
use crate::serve::{accept_loop, serve_http, Drain, Timeouts};

/// Where plain-HTTP requests are sent.
#[derive(Debug, Clone)]
pub(crate) struct RedirectTarget {
    /// The HTTPS port actually listening, left out of the URL when it is 443.
    pub https_port: u16,
    /// Used when the request has no Host header (HTTP/1.0).
    pub fallback_host: IpAddr,
}

impl RedirectTarget {
    pub fn location<B>(&self, req: &Request<B>) -> String {
        let host = req
            .headers()
            .get(HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| req.uri().host())
            .map(strip_port)
            .filter(|h| !h.is_empty())
            .map(str::to_owned)
            .unwrap_or_else(|| match self.fallback_host {
                IpAddr::V4(ip) => ip.to_string(),
                IpAddr::V6(ip) => format!("[{ip}]"),
            });
        let port = match self.https_port {
            443 => String::new(),
            p => format!(":{p}"),
        };
        let path = req
            .uri()
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        format!("https://{host}{port}{path}")
    }

    fn respond<B>(&self, req: &Request<B>) -> Response<Full<Bytes>> {
        let mut resp = text(StatusCode::MOVED_PERMANENTLY, "moved to https\n");
        match HeaderValue::from_str(&self.location(req)) {
            Ok(location) => {
                resp.headers_mut().insert(LOCATION, location);
                resp
            }
            // Only a Host header with bytes a URL cannot carry gets here.
            Err(_) => text(StatusCode::BAD_REQUEST, "bad host\n"),
        }
    }
}

/// `host[:port]` or `[v6][:port]` without the port.
fn strip_port(authority: &str) -> &str {
    if authority.starts_with('[') {
        return authority
            .find(']')
            .map_or(authority, |end| &authority[..=end]);
    }
    authority.split(':').next().unwrap_or(authority)
}

pub(crate) async fn serve(
    listener: TcpListener,
    target: RedirectTarget,
    timeouts: Timeouts,
    drain: Drain,
) {
    let stop = drain.stop.clone();
    accept_loop(listener, drain, move |stream, _peer| {
        let target = target.clone();
        serve_http(stream, timeouts, stop.clone(), move |req| {
            let resp = target.respond(&req);
            async move { resp }
        })
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(port: u16) -> RedirectTarget {
        RedirectTarget {
            https_port: port,
            fallback_host: "127.0.0.5".parse().unwrap(),
        }
    }

    fn req(host: Option<&str>, path: &str) -> Request<()> {
        let mut b = Request::get(path);
        if let Some(h) = host {
            b = b.header(HOST, h);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn keeps_host_and_path_and_drops_default_port() {
        assert_eq!(
            target(443).location(&req(Some("ps.example.org:80"), "/AdminConsole?x=1")),
            "https://ps.example.org/AdminConsole?x=1"
        );
        assert_eq!(
            target(8443).location(&req(Some("[::1]:8080"), "/")),
            "https://[::1]:8443/"
        );
    }

    #[test]
    fn falls_back_to_the_bind_address() {
        assert_eq!(
            target(7443).location(&req(None, "/a")),
            "https://127.0.0.5:7443/a"
        );
    }
}
