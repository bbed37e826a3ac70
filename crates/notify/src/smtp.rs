//! One SMTP connection per Notifications object, kept between mails and replaced when it
//! is found dead. lettre's pooled transport does not recover from a connection the server
//! closed while idle (its issue #743: every later send fails with "incomplete response"),
//! so steward drives lettre's connection type itself: a stale connection (closed, or a
//! `421` reply) is dropped and the mail is tried once more on a fresh connection at once.
//!
//! The conversation is done step by step (connect, STARTTLS, AUTH, MAIL, each RCPT, DATA)
//! so that a failure says which step failed: DNS, TCP, TLS version, certificate, AUTH or
//! a refused recipient.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, Certificate, TlsParameters};
use lettre::transport::smtp::commands::{Data, Mail, Rcpt};
use lettre::transport::smtp::extension::ClientId;
use lettre::Address;
use steward_model::notifications::{SmtpTls, TlsVersion};

use crate::error::{bounded, classify, DeliveryError, Stage};
use crate::settings::SmtpSettings;

/// A connection idle longer than this is closed and replaced rather than reused: servers
/// commonly drop idle clients after a minute or more.
const IDLE_REUSE: Duration = Duration::from_secs(30);

/// A rendered mail, ready for the wire.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub from: String,
    pub to: Vec<String>,
    /// The whole message, headers and body (RFC 5322), CRLF line ends.
    pub bytes: Vec<u8>,
}

/// A mailer for one SMTP server.
pub struct Mailer {
    settings: SmtpSettings,
    connection: Option<(AsyncSmtpConnection, Instant)>,
    hello: ClientId,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailer")
            .field("settings", &self.settings)
            .field("connected", &self.connection.is_some())
            .finish()
    }
}

impl Mailer {
    pub fn new(settings: SmtpSettings) -> Self {
        Self {
            settings,
            connection: None,
            hello: ClientId::default(),
        }
    }

    pub fn settings(&self) -> &SmtpSettings {
        &self.settings
    }

    /// Deliver one mail; on a stale reused connection, once more on a fresh one.
    pub async fn send(&mut self, mail: &Outgoing) -> Result<(), DeliveryError> {
        let reused = self.take_reusable().await;
        let had_connection = reused.is_some();
        match self.send_on(reused, mail).await {
            Err(e) if had_connection && e.is_stale_connection() => {
                tracing::debug!(
                    "SMTP connection to {} was stale ({}); reconnecting",
                    self.settings.server,
                    e.label()
                );
                self.send_on(None, mail).await
            }
            other => other,
        }
    }

    /// Open a connection (and AUTH) without sending: what `notify test` checks first.
    pub async fn connect_only(&mut self) -> Result<(), DeliveryError> {
        let conn = self.connect().await?;
        self.connection = Some((conn, Instant::now()));
        Ok(())
    }

    /// Say goodbye politely (a shutdown, a settings change).
    pub async fn close(&mut self) {
        if let Some((mut conn, _)) = self.connection.take() {
            let _ = tokio::time::timeout(Duration::from_secs(2), conn.quit()).await;
        }
    }

    async fn take_reusable(&mut self) -> Option<AsyncSmtpConnection> {
        let (mut conn, since) = self.connection.take()?;
        if conn.has_broken() || since.elapsed() > IDLE_REUSE {
            let _ = tokio::time::timeout(Duration::from_secs(1), conn.abort()).await;
            return None;
        }
        Some(conn)
    }

    async fn send_on(
        &mut self,
        conn: Option<AsyncSmtpConnection>,
        mail: &Outgoing,
    ) -> Result<(), DeliveryError> {
        let mut conn = match conn {
            Some(c) => c,
            None => self.connect().await?,
        };
        match self.transaction(&mut conn, mail).await {
            Ok(()) => {
                self.connection = Some((conn, Instant::now()));
                Ok(())
            }
            Err(e) => {
                // A refusal leaves the connection usable in principle, but its state is
                // unknown: start the next mail clean.
                let _ = tokio::time::timeout(Duration::from_secs(1), conn.abort()).await;
                Err(e)
            }
        }
    }

    async fn transaction(
        &self,
        conn: &mut AsyncSmtpConnection,
        mail: &Outgoing,
    ) -> Result<(), DeliveryError> {
        let from: Address = mail.from.parse().map_err(|_| DeliveryError::Config {
            detail: format!("from {} is not a mail address", bounded(&mail.from)),
        })?;
        self.step(
            Stage::Mail(&mail.from),
            conn.command(Mail::new(Some(from), vec![])),
        )
        .await?;
        for to in &mail.to {
            let address: Address = to.parse().map_err(|_| DeliveryError::Config {
                detail: format!("to {} is not a mail address", bounded(to)),
            })?;
            self.step(Stage::Rcpt(to), conn.command(Rcpt::new(address, vec![])))
                .await?;
        }
        self.step(Stage::Data, conn.command(Data)).await?;
        self.step(Stage::Data, conn.message(&mail.bytes)).await?;
        Ok(())
    }

    async fn step<T>(
        &self,
        stage: Stage<'_>,
        fut: impl std::future::Future<Output = Result<T, lettre::transport::smtp::Error>>,
    ) -> Result<T, DeliveryError> {
        match tokio::time::timeout(self.settings.timeout, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(classify(
                &e,
                stage,
                &self.settings.server,
                self.settings.min_tls_version.as_str(),
            )),
            Err(_) => Err(DeliveryError::Timeout {
                during: match stage {
                    Stage::Connect => "connecting",
                    Stage::Starttls => "during STARTTLS",
                    Stage::Auth => "during AUTH",
                    Stage::Mail(_) | Stage::Rcpt(_) => "waiting for the server's reply",
                    Stage::Data => "sending the message",
                },
            }),
        }
    }

    async fn connect(&self) -> Result<AsyncSmtpConnection, DeliveryError> {
        let s = &self.settings;
        let addresses = self.resolve().await?;
        let tls = match s.tls {
            SmtpTls::None => None,
            SmtpTls::Starttls | SmtpTls::Implicit => Some(self.tls_parameters()?),
        };
        let implicit = if s.tls == SmtpTls::Implicit {
            tls.clone()
        } else {
            None
        };
        let mut conn = self
            .step(
                Stage::Connect,
                AsyncSmtpConnection::connect_tokio1(
                    addresses.as_slice(),
                    Some(s.timeout),
                    &self.hello,
                    implicit,
                    None,
                ),
            )
            .await
            .map_err(|e| match e {
                DeliveryError::Tcp { detail, .. } => DeliveryError::Tcp {
                    address: format!("{}:{}", s.server, s.port),
                    detail,
                },
                other => other,
            })?;
        if s.tls == SmtpTls::Starttls {
            if !conn.can_starttls() {
                conn.abort().await;
                return Err(DeliveryError::StarttlsUnavailable);
            }
            let params = tls.ok_or_else(|| DeliveryError::Tls {
                detail: "no TLS parameters".into(),
            })?;
            self.step(Stage::Starttls, conn.starttls(params, &self.hello))
                .await?;
        }
        if let Some((user, password)) = &s.credentials {
            let credentials =
                Credentials::new(user.expose().to_owned(), password.expose().to_owned());
            self.step(
                Stage::Auth,
                conn.auth(&[Mechanism::Plain, Mechanism::Login], &credentials),
            )
            .await?;
        }
        Ok(conn)
    }

    async fn resolve(&self) -> Result<Vec<SocketAddr>, DeliveryError> {
        let s = &self.settings;
        let lookup = tokio::net::lookup_host((s.server.as_str(), s.port));
        match tokio::time::timeout(s.timeout, lookup).await {
            Ok(Ok(found)) => {
                let all: Vec<SocketAddr> = found.collect();
                if all.is_empty() {
                    Err(DeliveryError::Dns {
                        host: s.server.clone(),
                        detail: "no addresses".into(),
                    })
                } else {
                    Ok(all)
                }
            }
            Ok(Err(e)) => Err(DeliveryError::Dns {
                host: s.server.clone(),
                detail: bounded(&e.to_string()),
            }),
            Err(_) => Err(DeliveryError::Timeout {
                during: "resolving the server's name",
            }),
        }
    }

    fn tls_parameters(&self) -> Result<TlsParameters, DeliveryError> {
        let s = &self.settings;
        let mut builder =
            TlsParameters::builder(s.server.clone()).set_min_tls_version(match s.min_tls_version {
                TlsVersion::Tls12 => lettre::transport::smtp::client::TlsVersion::Tlsv12,
                TlsVersion::Tls13 => lettre::transport::smtp::client::TlsVersion::Tlsv13,
            });
        for pem in &s.trust_pem {
            let cert = Certificate::from_pem(pem).map_err(|e| DeliveryError::Config {
                detail: format!(
                    "a trust file holds no usable certificate: {}",
                    bounded(&e.to_string())
                ),
            })?;
            builder = builder.add_root_certificate(cert);
        }
        builder.build_rustls().map_err(|e| DeliveryError::Tls {
            detail: bounded(&e.to_string()),
        })
    }
}
