//! The one HTTP client of the tests: hyper's HTTP/1.1 (framing, chunked bodies, keep-alive
//! peers that ignore `Connection: close`), plain or over TLS with the caller's rustls
//! configuration (the agents' mutual TLS), behind a blocking call. One connection per
//! request, every step bounded in time.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpStream;

/// How long connecting, and then the whole exchange, may take.
const CONNECT: Duration = Duration::from_secs(5);
const EXCHANGE: Duration = Duration::from_secs(60);

/// A complete response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; a panic showing the body when it is not.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}), status {}: {}", self.status, self.text()))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One request to `addr` (`IP:PORT`).
#[derive(Debug, Clone)]
pub struct Request<'a> {
    pub method: &'a str,
    pub addr: &'a str,
    pub path: &'a str,
    /// A JSON body (sent with `Content-Type: application/json`).
    pub json: Option<&'a Value>,
    /// Extra headers, e.g. `("Authorization", "Bearer ...")`.
    pub headers: &'a [(&'a str, &'a str)],
    /// TLS with this configuration, the server verified as `server_name`.
    pub tls: Option<(Arc<rustls::ClientConfig>, &'a str)>,
}

impl<'a> Request<'a> {
    pub fn get(addr: &'a str, path: &'a str) -> Self {
        Self {
            method: "GET",
            addr,
            path,
            json: None,
            headers: &[],
            tls: None,
        }
    }

    /// Send it and read the whole response.
    pub fn send(&self) -> io::Result<Response> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(async {
            tokio::time::timeout(EXCHANGE, self.exchange())
                .await
                .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no complete response"))?
        })
    }

    async fn exchange(&self) -> io::Result<Response> {
        let addr: SocketAddr = self
            .addr
            .parse()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{e}")))?;
        let tcp = tokio::time::timeout(CONNECT, TcpStream::connect(addr))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect"))??;
        match &self.tls {
            None => self.over(tcp).await,
            Some((config, name)) => {
                let name = rustls::pki_types::ServerName::try_from(name.to_string())
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
                let tls = tokio_rustls::TlsConnector::from(config.clone())
                    .connect(name, tcp)
                    .await?;
                self.over(tls).await
            }
        }
    }

    async fn over<S>(&self, stream: S) -> io::Result<Response>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(io::Error::other)?;
        tokio::spawn(connection);
        let body = self.json.map(Value::to_string).unwrap_or_default();
        let mut request = hyper::Request::builder()
            .method(self.method)
            .uri(self.path)
            .header("Host", self.addr)
            .header("Accept", "*/*");
        if self.json.is_some() {
            request = request.header("Content-Type", "application/json; charset=utf-8");
        }
        for (name, value) in self.headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(Full::new(Bytes::from(body)))
            .map_err(io::Error::other)?;
        let response = sender
            .send_request(request)
            .await
            .map_err(io::Error::other)?;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(io::Error::other)?
            .to_bytes()
            .to_vec();
        Ok(Response {
            status,
            headers,
            body,
        })
    }
}

/// `GET path` from `addr` (`IP:PORT`), plain HTTP.
pub fn get(addr: &str, path: &str) -> io::Result<Response> {
    Request::get(addr, path).send()
}

/// `METHOD path` with an optional JSON body, plain HTTP.
pub fn http(method: &str, addr: &str, path: &str, json: Option<&Value>) -> io::Result<Response> {
    Request {
        method,
        json,
        ..Request::get(addr, path)
    }
    .send()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    /// A peer that answers one request with `raw` and keeps the connection open (as
    /// chromedriver does): the response must be complete by its own framing.
    fn peer(raw: &'static [u8]) -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        std::thread::spawn(move || {
            let (mut sock, _) = listener.accept().unwrap();
            let mut buf = [0u8; 4096];
            let _ = sock.read(&mut buf);
            sock.write_all(raw).unwrap();
            std::thread::sleep(Duration::from_secs(30));
        });
        addr
    }

    #[test]
    fn chunked_bodies_are_joined_without_waiting_for_the_close() {
        let addr = peer(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nWiki\r\n5;x=y\r\npedia\r\n0\r\n\r\n");
        let resp = get(&addr, "/").unwrap();
        assert_eq!((resp.status, resp.text().as_str()), (200, "Wikipedia"));
    }

    #[test]
    fn a_json_body_is_sent_and_headers_are_read() {
        let addr = peer(b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\nX-Seen: yes\r\n\r\n{}");
        let resp = http(
            "POST",
            &addr,
            "/session",
            Some(&serde_json::json!({"a": 1})),
        )
        .unwrap();
        assert_eq!(resp.status, 201);
        assert_eq!(resp.header("x-seen"), Some("yes"));
        assert_eq!(resp.json(), serde_json::json!({}));
    }
}
