//! The claim's plan on PostgreSQL. PostgreSQL plans a statement prepared once
//! for any runtime (its generic plan) from the column's statistics alone, so a
//! claim that can walk the primary key in `seq` order and stop at the first run
//! of its runtime looks as cheap as the claimable-runs index; with one runtime's
//! deep queue ahead, that walk reads every one of those runs, for every claim of
//! every other runtime.

use sqlx::{Connection, PgConnection};

use crate::fixtures::*;

postgres_only![a_deep_queue_on_one_runtime_is_not_walked_by_the_claims_of_another];

/// How often PostgreSQL has scanned the primary key of `executions`, and any
/// of its indexes, so far, as its statistics say.
async fn index_scans(conn: &mut PgConnection) -> (i64, i64) {
    sqlx::query_as(
        "SELECT i.idx_scan, t.idx_scan FROM pg_stat_user_indexes i \
         JOIN pg_stat_user_tables t ON t.relid = i.relid \
         WHERE i.indexrelname = 'executions_pkey'",
    )
    .fetch_one(conn)
    .await
    .unwrap()
}

/// A runtime with nothing queued, behind another with 5,000 runs waiting:
/// each of its claims, the cached generic plan's as well as the first ones,
/// reads the claimable-runs index and never walks the primary key.
async fn a_deep_queue_on_one_runtime_is_not_walked_by_the_claims_of_another(
    store: Arc<dyn Store>,
    url: String,
) {
    let w = world(store.clone()).await;
    let idle = add_runtime(&store, &w.org.id, "idle").await;
    let mut conn = PgConnection::connect(&url).await.unwrap();
    // The deep queue first, then the idle runtime's history.
    for (prefix, runtime, status, count) in [
        ("deep-", &w.runtime.id, "PENDENT", 5_000),
        ("done-", &idle.id, "FINISHED", 1_000),
    ] {
        sqlx::query(
            "INSERT INTO executions \
                 (id, organization_id, runtime_id, robot_id, robot_version, variables, \
                  status, init) \
             SELECT $1 || n, $2, $3, $4, 1, '{}', $5, n \
             FROM generate_series(1, $6) AS n",
        )
        .bind(prefix)
        .bind(&w.org.id)
        .bind(runtime)
        .bind(&w.robot_id)
        .bind(status)
        .bind(count)
        .execute(&mut conn)
        .await
        .unwrap();
    }
    sqlx::query("ANALYZE executions")
        .execute(&mut conn)
        .await
        .unwrap();
    let (primary_before, all_before) = index_scans(&mut conn).await;
    // PostgreSQL weighs its generic plan from a statement's sixth execution on
    // a connection, and the pool hands its connections out in turn.
    const CLAIMS: i64 = 100;
    for n in 0..CLAIMS {
        let claimed = store.claim_next(&idle.id, &format!("l{n}")).await.unwrap();
        assert!(claimed.is_none(), "{claimed:?}");
    }
    // The claims' statistics reach the shared counters when their backend
    // flushes them: at most once a second while busy, up to ten seconds
    // after its last transaction once idle.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let primary = loop {
        let (primary, all) = index_scans(&mut conn).await;
        if all >= all_before + CLAIMS {
            break primary;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the claims' scans never showed: {all_before} -> {all}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(primary, primary_before, "a claim walked the primary key");
    // The deep queue is still claimed from its head.
    let claimed = store.claim_next(&w.runtime.id, "head").await.unwrap();
    assert_eq!(claimed.unwrap().execution_id, "deep-1");
}
