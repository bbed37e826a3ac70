//! The Notifications controller and the event feed, on scripted agents.

use std::time::Duration;

use steward_model::notifications::Notifications as Spec;

use super::*;
use crate::fakes::{compiled, fixture, headline, Fixture};
use crate::status::{EventType, ResourceDetail};

/// A Notifications object compiled from YAML, like the daemon's.
fn spec(smtp: &str) -> Spec {
    let notifications = format!(
        "apiVersion: steward/v1\nkind: Notifications\nmetadata: {{name: admins}}\nspec:\n  smtp: {smtp}\n  from: steward@example.eng\n  to: [ps-admins@example.eng]\n  events: [ServiceDown, AgentDown]\n"
    );
    let text = steward_testkit::Fixture::installation()
        .document(&notifications)
        .documents();
    compiled(&text).notifications["admins"].clone()
}

const UNSET: &str = "{server: smtp.example.eng, usernameRef: env:STEWARD_TEST_SMTP_USER_UNSET, passwordRef: env:STEWARD_TEST_SMTP_PASSWORD_UNSET}";

/// Declares the Notifications object `admins` with `smtp` and runs its controller.
async fn declare_admins(fx: &Fixture, smtp: &str) {
    let mut s = fx.current();
    s.notifications.insert("admins".into(), spec(smtp));
    fx.apply(s);
    fx.run::<Notifications>("admins".into()).await.unwrap();
}

/// The event feed, running as the daemon runs it.
struct Feed {
    shutdown: tokio_util::sync::CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Feed {
    async fn start(fx: &Fixture) -> Feed {
        let undelivered = fx.ctx.undelivered.lock().unwrap().take().unwrap();
        let shutdown = tokio_util::sync::CancellationToken::new();
        let task = tokio::spawn(feed::run(fx.ctx.clone(), undelivered, shutdown.clone()));
        tokio::task::yield_now().await;
        Feed { shutdown, task }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn a_notifications_object_is_shown_with_its_settings_verdict() {
    let fx = fixture(&[("app1", &["PSIS"])]);
    declare_admins(&fx, UNSET).await;

    let status = fx.ctx.store.status();
    assert_eq!(status.notifications.len(), 1);
    let n = &status.notifications[0];
    assert_eq!(n.server, "smtp.example.eng:587");
    assert_eq!(n.tls, "starttls");
    assert_eq!(n.events, ["ServiceDown", "AgentDown"]);
    assert_eq!(headline(&n.conditions), "SettingsUnusable");
    assert!(
        n.conditions
            .iter()
            .any(|c| c.message.contains("STEWARD_TEST_SMTP_USER_UNSET")),
        "{:?}",
        n.conditions
    );
    let resource = fx.ctx.store.resource("notifications", "admins").unwrap();
    assert_eq!(resource.kind, "Notifications");
    assert!(matches!(resource.detail, ResourceDetail::Notifications(_)));

    // Removed from the files: gone from the status, its outbox closed.
    let mut s = fx.current();
    s.notifications.clear();
    fx.apply(s);
    fx.run::<Notifications>("admins".into()).await.unwrap();
    assert!(fx.ctx.store.status().notifications.is_empty());
    assert!(fx.ctx.notifier.names().is_empty());
}

#[tokio::test(start_paused = true)]
async fn usable_settings_are_ready() {
    let fx = fixture(&[("app1", &["PSIS"])]);
    declare_admins(&fx, "{server: localhost, port: 2525, tls: none}").await;
    let n = &fx.ctx.store.status().notifications[0];
    assert_eq!(headline(&n.conditions), "Configured");
}

#[tokio::test(start_paused = true)]
async fn a_mail_that_cannot_be_sent_is_an_event_a_metric_and_the_last_error() {
    let fx = fixture(&[("app1", &["PSIS"])]);
    declare_admins(&fx, UNSET).await;
    let running = Feed::start(&fx).await;

    // A service going down is a ServiceDown; its mail cannot be sent (no credentials).
    fx.ctx.store.event(
        "service/app1/PSIS".into(),
        EventType::Warning,
        "HealthCheckFailing",
        "503",
    );
    let store = fx.ctx.store.clone();
    let found = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            if let Some(e) = store
                .status()
                .events
                .into_iter()
                .find(|e| e.reason == feed::UNDELIVERED)
            {
                return e;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("no NotificationUndelivered event");
    assert_eq!(found.object, "notifications/admins");
    assert!(
        found.message.contains("service/app1/PSIS"),
        "{}",
        found.message
    );
    assert!(
        found.message.contains("STEWARD_TEST_SMTP_PASSWORD_UNSET")
            || found.message.contains("STEWARD_TEST_SMTP_USER_UNSET"),
        "{}",
        found.message
    );

    let delivery = &fx.ctx.store.status().notifications[0].delivery;
    assert_eq!((delivery.failed, delivery.queued), (1, 0));
    assert_eq!(delivery.last_error_reason.as_deref(), Some("config"));
    assert_eq!(
        fx.counter("steward_notifications_sent_total", &[("result", "failed")]),
        1.0
    );
    // Events that are not notification events mail nothing.
    fx.ctx
        .store
        .event("server/app1".into(), EventType::Normal, "AgentReady", "ok");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(fx.ctx.store.status().notifications[0].delivery.failed, 1);
    running.stop().await;
}

#[tokio::test(start_paused = true)]
async fn invalid_desired_state_is_an_event_mail_notifications_see() {
    let fx = fixture(&[("app1", &["PSIS"])]);
    let handle = crate::ControllersHandle {
        ctx: fx.ctx.clone(),
    };
    let mut events = fx.ctx.store.events();
    handle.desired_state_invalid("the desired state is invalid (1 error)");
    let event = events.recv().await.unwrap();
    assert_eq!(event.object, "installation/ps");
    assert_eq!(
        steward_notify::event_for(
            &event.object,
            event.event_type == EventType::Warning,
            &event.reason
        ),
        Some(steward_model::notifications::NotificationEvent::DesiredStateInvalid)
    );
}

#[tokio::test(start_paused = true)]
async fn only_the_leader_mails_when_several_daemons_run() {
    let fx = fixture(&[("app1", &["PSIS"])]);
    let leading = fx.follow();
    declare_admins(&fx, UNSET).await;
    let running = Feed::start(&fx).await;
    let attempts = || {
        let d = &fx.ctx.store.status().notifications[0].delivery;
        d.failed + d.queued + d.sent
    };

    // A follower sees the event (its status shows it) but offers no mail.
    let down = || {
        fx.ctx.store.event(
            "service/app1/PSIS".into(),
            EventType::Warning,
            "HealthCheckFailing",
            "503",
        )
    };
    down();
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(attempts(), 0);

    // Once it leads, it mails (here: tries to, and fails for want of credentials).
    leading.win();
    fx.ctx.store.event(
        "service/app1/PSWS".into(),
        EventType::Warning,
        "HealthCheckFailing",
        "503",
    );
    tokio::time::timeout(Duration::from_secs(30), async {
        while attempts() == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the leader offered no mail");
    running.stop().await;
}
