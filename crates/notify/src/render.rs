//! A notice and a Notifications object's templates -> an RFC 5322 message.

use lettre::message::{header::ContentType, Mailbox, Message};
use minijinja::context;
use steward_model::notifications::{template_environment, Notifications};
use time::format_description::well_known::Rfc3339;

use crate::error::{bounded, DeliveryError};
use crate::notice::Notice;
use crate::smtp::Outgoing;

/// Render `notice` with `n`'s subject and body for the installation named `installation`.
pub fn render(
    n: &Notifications,
    notice: &Notice,
    installation: &str,
) -> Result<Outgoing, DeliveryError> {
    let env = template_environment();
    let (kind, name) = notice
        .object
        .split_once('/')
        .unwrap_or((notice.object.as_str(), ""));
    let ctx = context! {
        event => notice.event.as_str(),
        object => &notice.object,
        kind => kind,
        name => name,
        reason => &notice.reason,
        message => &notice.message,
        time => notice.time.format(&Rfc3339).unwrap_or_default(),
        severity => if notice.warning { "warning" } else { "normal" },
        installation => installation,
        notification => &n.name,
    };
    let render = |field: &str, source: &str| {
        env.render_str(source, ctx.clone())
            .map_err(|e| DeliveryError::Template {
                detail: format!("{field}: {}", bounded(&e.to_string())),
            })
    };
    // One line whatever the values hold: a line break would end the header.
    let subject: String = render("subject", &n.subject)?
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let body = render("body", &n.body)?;
    let mailbox = |a: &str| -> Result<Mailbox, DeliveryError> {
        a.parse().map_err(|_| DeliveryError::Config {
            detail: format!("{} is not a mail address", bounded(a)),
        })
    };
    let mut builder = Message::builder().from(mailbox(&n.from)?).subject(subject);
    for to in &n.to {
        builder = builder.to(mailbox(to)?);
    }
    let message = builder
        .header(ContentType::TEXT_PLAIN)
        .body(body)
        .map_err(|e| DeliveryError::Config {
            detail: bounded(&e.to_string()),
        })?;
    Ok(Outgoing {
        from: n.from.clone(),
        to: n.to.clone(),
        bytes: message.formatted(),
    })
}
