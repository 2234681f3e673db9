//! Webhooks: deliveries queued with the consumer's cursor in one transaction,
//! claims that keep a delivery from being sent twice at once, attempts and the
//! retries they schedule, 410 Gone, replays, organisation scoping.

use regente_store::{
    AttemptOutcome, DeliveryStatus, EventCursor, Webhook, WebhookAttempt, WebhookDelivery,
};

use crate::fixtures::*;

conformance! {
    store: [
        deliveries_and_the_cursor_commit_together,
        a_claimed_delivery_is_not_claimed_again_until_its_claim_ends,
        attempts_schedule_retries_then_fail_for_good,
        gone_disables_the_webhook_and_fails_its_pending_deliveries,
        a_replay_queues_the_same_delivery_again,
        webhooks_are_scoped_to_their_organisation,
        a_change_and_its_audit_record_commit_together,
        secrets_are_sealed_again_only_if_unchanged,
    ],
}

const CONSUMER: &str = "webhooks-test";

fn webhook(organization_id: &str, at: Millis) -> Webhook {
    Webhook {
        id: new_id(),
        organization_id: organization_id.to_owned(),
        url: "http://127.0.0.1:9/hook".to_owned(),
        events: vec!["execution.finished".to_owned()],
        description: Some("erp".to_owned()),
        enabled: true,
        disabled_reason: None,
        secret: "v1.sealed".to_owned(),
        previous_secret: None,
        previous_secret_until: None,
        created_at: at,
        updated_at: at,
    }
}

fn delivery(webhook: &Webhook, event_seq: i64, due: Millis) -> WebhookDelivery {
    WebhookDelivery {
        id: new_id(),
        organization_id: webhook.organization_id.clone(),
        webhook_id: webhook.id.clone(),
        event_type: "execution.finished".to_owned(),
        event_seq,
        payload: format!("{{\"seq\":{event_seq}}}"),
        status: DeliveryStatus::Pending,
        attempts: 0,
        round_attempts: 0,
        next_attempt_at: Some(due),
        last_status_code: None,
        last_error: None,
        last_duration_ms: None,
        last_attempt_at: None,
        created_at: due + event_seq,
    }
}

fn attempt(delivery_id: &str, attempt: i64, at: Millis, code: i64) -> WebhookAttempt {
    WebhookAttempt {
        delivery_id: delivery_id.to_owned(),
        attempt,
        at,
        duration_ms: 12,
        status_code: Some(code),
        error: None,
        response: Some("ok".to_owned()),
    }
}

async fn with_webhook(store: &Arc<dyn Store>) -> (World, Webhook) {
    let world = world(store.clone()).await;
    let hook = webhook(&world.org.id, 100);
    store.create_webhook(&hook, None).await.unwrap();
    (world, hook)
}

async fn deliveries_and_the_cursor_commit_together(store: Arc<dyn Store>) {
    let (_world, hook) = with_webhook(&store).await;
    let first = delivery(&hook, 1, 1_000);
    let cursor = EventCursor { txid: 0, seq: 7 };
    store
        .queue_webhook_deliveries(std::slice::from_ref(&first), CONSUMER, cursor, 1_000)
        .await
        .unwrap();
    assert_eq!(store.load_cursor(CONSUMER).await.unwrap(), cursor);

    // A batch that fails (a delivery id taken) saves neither its rows nor its cursor.
    let clash = WebhookDelivery {
        id: first.id.clone(),
        ..delivery(&hook, 2, 1_000)
    };
    let fresh = delivery(&hook, 3, 1_000);
    let later = EventCursor { txid: 0, seq: 9 };
    let refused = store
        .queue_webhook_deliveries(&[fresh.clone(), clash], CONSUMER, later, 1_001)
        .await;
    assert!(matches!(refused, Err(Error::Conflict(_))), "{refused:?}");
    assert_eq!(store.load_cursor(CONSUMER).await.unwrap(), cursor);
    let listed = store
        .list_webhook_deliveries(&hook.organization_id, &hook.id, None, 10)
        .await
        .unwrap();
    assert_eq!(listed, vec![first]);
    assert_eq!(store.pending_webhook_deliveries().await.unwrap(), 1);
}

async fn a_claimed_delivery_is_not_claimed_again_until_its_claim_ends(store: Arc<dyn Store>) {
    let (_world, hook) = with_webhook(&store).await;
    let due = delivery(&hook, 1, 1_000);
    let later = delivery(&hook, 2, 5_000);
    store
        .queue_webhook_deliveries(&[due.clone(), later], CONSUMER, EventCursor::START, 0)
        .await
        .unwrap();
    let found = store.due_webhook_deliveries(2_000, 10).await.unwrap();
    assert_eq!(
        found.iter().map(|d| &d.id).collect::<Vec<_>>(),
        vec![&due.id]
    );

    assert!(store
        .claim_webhook_delivery(&due.id, 2_000, 20_000)
        .await
        .unwrap());
    assert!(!store
        .claim_webhook_delivery(&due.id, 2_000, 20_000)
        .await
        .unwrap());
    let found = store.due_webhook_deliveries(6_000, 10).await.unwrap();
    assert_eq!(found.len(), 1, "only the later one is due: {found:?}");
    // A claim whose attempt was never recorded (a crash) ends: due again.
    let found = store.due_webhook_deliveries(20_000, 10).await.unwrap();
    assert_eq!(found.len(), 2);
    assert!(store
        .claim_webhook_delivery(&due.id, 20_000, 40_000)
        .await
        .unwrap());
}

async fn attempts_schedule_retries_then_fail_for_good(store: Arc<dyn Store>) {
    let (_world, hook) = with_webhook(&store).await;
    let one = delivery(&hook, 1, 1_000);
    store
        .queue_webhook_deliveries(std::slice::from_ref(&one), CONSUMER, EventCursor::START, 0)
        .await
        .unwrap();
    assert!(store
        .claim_webhook_delivery(&one.id, 1_000, 30_000)
        .await
        .unwrap());
    store
        .record_webhook_attempt(
            &attempt(&one.id, 1, 1_000, 500),
            &AttemptOutcome::RetryAt(6_000),
        )
        .await
        .unwrap();
    assert!(store
        .due_webhook_deliveries(5_999, 10)
        .await
        .unwrap()
        .is_empty());
    let due = store.due_webhook_deliveries(6_000, 10).await.unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(
        (
            due[0].attempts,
            due[0].round_attempts,
            due[0].last_status_code
        ),
        (1, 1, Some(500))
    );
    store
        .record_webhook_attempt(&attempt(&one.id, 2, 6_000, 503), &AttemptOutcome::Failed)
        .await
        .unwrap();
    let (read, attempts) = store
        .get_webhook_delivery(&hook.organization_id, &hook.id, &one.id)
        .await
        .unwrap();
    assert_eq!(read.status, DeliveryStatus::Failed);
    assert_eq!(read.next_attempt_at, None);
    assert_eq!(
        attempts
            .iter()
            .map(|a| (a.attempt, a.status_code))
            .collect::<Vec<_>>(),
        vec![(1, Some(500)), (2, Some(503))]
    );
    assert!(store
        .due_webhook_deliveries(i64::MAX, 10)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(store.pending_webhook_deliveries().await.unwrap(), 0);
}

async fn gone_disables_the_webhook_and_fails_its_pending_deliveries(store: Arc<dyn Store>) {
    let (_world, hook) = with_webhook(&store).await;
    let (one, two) = (delivery(&hook, 1, 1_000), delivery(&hook, 2, 1_000));
    store
        .queue_webhook_deliveries(&[one.clone(), two.clone()], CONSUMER, EventCursor::START, 0)
        .await
        .unwrap();
    let gone = AttemptOutcome::Gone {
        reason: "410 Gone".to_owned(),
    };
    store
        .record_webhook_attempt(&attempt(&one.id, 1, 1_000, 410), &gone)
        .await
        .unwrap();
    let read = store
        .get_webhook(&hook.organization_id, &hook.id)
        .await
        .unwrap();
    assert!(!read.enabled);
    assert_eq!(read.disabled_reason.as_deref(), Some("410 Gone"));
    assert!(store.enabled_webhooks().await.unwrap().is_empty());
    let (two_read, _) = store
        .get_webhook_delivery(&hook.organization_id, &hook.id, &two.id)
        .await
        .unwrap();
    assert_eq!(two_read.status, DeliveryStatus::Failed);
    assert!(store
        .due_webhook_deliveries(i64::MAX, 10)
        .await
        .unwrap()
        .is_empty());
}

async fn a_replay_queues_the_same_delivery_again(store: Arc<dyn Store>) {
    let (_world, hook) = with_webhook(&store).await;
    let one = delivery(&hook, 1, 1_000);
    store
        .queue_webhook_deliveries(std::slice::from_ref(&one), CONSUMER, EventCursor::START, 0)
        .await
        .unwrap();
    store
        .record_webhook_attempt(&attempt(&one.id, 1, 1_000, 200), &AttemptOutcome::Succeeded)
        .await
        .unwrap();
    let replayed = store
        .replay_webhook_delivery(&hook.organization_id, &hook.id, &one.id, 9_000, None)
        .await
        .unwrap();
    assert_eq!(replayed.id, one.id);
    assert_eq!(replayed.status, DeliveryStatus::Pending);
    assert_eq!((replayed.attempts, replayed.round_attempts), (1, 0));
    assert_eq!(replayed.next_attempt_at, Some(9_000));
    assert_eq!(
        store.due_webhook_deliveries(9_000, 10).await.unwrap().len(),
        1
    );
}

async fn webhooks_are_scoped_to_their_organisation(store: Arc<dyn Store>) {
    let (world, hook) = with_webhook(&store).await;
    let other = organization("other", false, 20);
    store
        .create_organization(
            &other,
            &user(&other.id, "admin-other", Role::Admin, 20),
            None,
        )
        .await
        .unwrap();
    assert!(is_not_found(store.get_webhook(&other.id, &hook.id).await));
    assert!(store.list_webhooks(&other.id).await.unwrap().is_empty());
    let moved = Webhook {
        organization_id: other.id.clone(),
        url: "http://elsewhere/".to_owned(),
        ..hook.clone()
    };
    assert!(is_not_found(store.update_webhook(&moved, None).await));
    assert!(is_not_found(
        store.delete_webhook(&other.id, &hook.id, None).await
    ));
    assert!(is_not_found(
        store
            .replay_webhook_delivery(&other.id, &hook.id, "0000000000000000", 1, None)
            .await
    ));

    let changed = Webhook {
        url: "https://example.org/hook".to_owned(),
        events: vec!["execution.error".to_owned(), "runtime.offline".to_owned()],
        enabled: false,
        updated_at: 200,
        ..hook.clone()
    };
    store.update_webhook(&changed, None).await.unwrap();
    assert_eq!(
        store.list_webhooks(&world.org.id).await.unwrap(),
        vec![changed]
    );
    store
        .delete_webhook(&world.org.id, &hook.id, None)
        .await
        .unwrap();
    assert!(is_not_found(
        store.get_webhook(&world.org.id, &hook.id).await
    ));
}

async fn a_change_and_its_audit_record_commit_together(store: Arc<dyn Store>) {
    let world = world(store.clone()).await;
    let hook = webhook(&world.org.id, 100);
    let entry = |action: &str| regente_store::AuditEntry {
        organization_id: world.org.id.clone(),
        time: 100,
        actor_id: world.admin.id.clone(),
        actor_name: world.admin.username.clone(),
        action: action.to_owned(),
        object_type: "webhook".to_owned(),
        object_id: hook.id.clone(),
        address: None,
        summary: json!({"url": hook.url}),
    };
    store
        .create_webhook(&hook, Some(&entry("webhook.create")))
        .await
        .unwrap();
    // A refused change (another organisation's id) writes no record.
    let other = organization("other", false, 20);
    let moved = Webhook {
        organization_id: other.id.clone(),
        ..hook.clone()
    };
    assert!(is_not_found(
        store
            .update_webhook(&moved, Some(&entry("webhook.update")))
            .await
    ));
    store
        .delete_webhook(&world.org.id, &hook.id, Some(&entry("webhook.delete")))
        .await
        .unwrap();
    let filter = regente_store::AuditFilter {
        object_id: Some(hook.id.clone()),
        limit: 10,
        ..Default::default()
    };
    let records = store.audit_records(&world.org.id, &filter).await.unwrap();
    let actions: Vec<&str> = records.iter().map(|r| r.entry.action.as_str()).collect();
    assert_eq!(actions, vec!["webhook.delete", "webhook.create"]);
}

async fn secrets_are_sealed_again_only_if_unchanged(store: Arc<dyn Store>) {
    let world = world(store.clone()).await;
    let hook = Webhook {
        secret: "v1.old.n.c".to_owned(),
        previous_secret: Some("v1.new.n.p".to_owned()),
        ..webhook(&world.org.id, 100)
    };
    store.create_webhook(&hook, None).await.unwrap();
    let under_new = Webhook {
        id: new_id(),
        secret: "v1.new.n.c".to_owned(),
        ..webhook(&world.org.id, 101)
    };
    store.create_webhook(&under_new, None).await.unwrap();
    let found = store.webhooks_sealed_not_under("new", 10).await.unwrap();
    assert_eq!(found, vec![hook.clone()]);

    // A secret changed meanwhile (a rotation) wins over the resealing.
    let rotated = Webhook {
        secret: "v1.new.n.rotated".to_owned(),
        previous_secret: Some("v1.old.n.c".to_owned()),
        ..hook.clone()
    };
    store.update_webhook(&rotated, None).await.unwrap();
    let stale = store
        .reseal_webhook_secrets(&hook, "v1.new.n.x", Some("v1.new.n.p"))
        .await
        .unwrap();
    assert!(!stale);
    assert!(store
        .reseal_webhook_secrets(&rotated, "v1.new.n.rotated", Some("v1.new.n.y"))
        .await
        .unwrap());
    assert!(store
        .webhooks_sealed_not_under("new", 10)
        .await
        .unwrap()
        .is_empty());
}
