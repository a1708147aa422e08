//! Fault test (issue 21): the spool's disk fills up. The collector's spool directory is a 3 MiB
//! tmpfs mounted by the test (root; unmounted by a drop guard), far below `spool_max_bytes`, so
//! the writes themselves fail with "no space left on device". The link to the storer is cut (a
//! TCP proxy the test controls) while a burst of HEP arrives: the window fills, the spool fills
//! the disk, the rest is dropped. Then the link comes back.
//!
//! Every packet is either stored exactly once or counted dropped by a spool reason (the
//! collector's counters and its `/metrics` agree, and the drop is logged); no record counted as
//! spooled is lost to a torn frame; once the spool has drained, new traffic is stored again; and
//! the same spool carries a second cut and a restart of the collector with no corrupt frame.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use sipcapture_integration_tests::faults::{counter, stored_exactly_once, wait_acked};
use sipcapture_integration_tests::hep::send_tcp_paced;
use sipcapture_integration_tests::prometheus::scrape;
use sipcapture_integration_tests::proxy::{Proxy, start_proxy};
use sipcapture_integration_tests::{
    Sandbox, Service, free_port, member_counters, open_db, wait_until,
};

/// The burst sent while the link is cut: several times what 3 MiB of spool holds.
const N: u32 = 20_000;
/// Packets sent once everything is back.
const AFTER: u32 = 1_000;
/// The burst spooled before the collector's restart: it and the in-memory window fit the disk
/// (about 800 bytes a record on disk).
const AGAIN: u32 = 2_500;

/// A tmpfs mounted for the test; unmounted when dropped.
struct TmpfsMount(PathBuf);

impl TmpfsMount {
    fn mount(path: &Path, size: &str) -> anyhow::Result<Self> {
        std::fs::create_dir_all(path)?;
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(path)
            .output()?;
        if !out.status.success() {
            anyhow::bail!("mount failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(TmpfsMount(path.to_owned()))
    }
}

impl TmpfsMount {
    /// Grows (or shrinks) the mounted tmpfs: an operator freeing disk space.
    fn resize(&self, size: &str) -> anyhow::Result<()> {
        let out = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .output()?;
        if !out.status.success() {
            anyhow::bail!("remount failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(())
    }
}

impl Drop for TmpfsMount {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.0)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            // Still busy (a process being reaped): detach it now, freed when unused.
            let _ignored = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
}

/// A storer behind a proxy, a collector whose spool is a small tmpfs; fields drop in order (the
/// collector before the mount, the mount before the sandbox).
struct Rig {
    collector: Service,
    proxy: Proxy,
    _storer: Service,
    mount: TmpfsMount,
    metrics: SocketAddr,
    storer_url: String,
    db_url: String,
    sandbox: Sandbox,
}

impl Rig {
    /// Stops the collector cleanly (SIGTERM); returns its log.
    fn stop_collector(&mut self) -> String {
        let process = &mut self.collector.process;
        assert!(
            process.terminate(Duration::from_secs(60)).unwrap(),
            "clean exit"
        );
        process.log_text()
    }

    /// Starts the collector again on the same spool and switches the link back on.
    async fn restart_collector(&self) -> Service {
        let restarted = self
            .sandbox
            .collector(
                "collector-restarted",
                std::slice::from_ref(&self.storer_url),
                &["--set".to_owned(), WINDOW.to_owned()],
            )
            .await
            .unwrap();
        self.proxy.up.send_replace(true);
        restarted
    }
}

/// The rig, or `None` (skip, outside CI) when a tmpfs cannot be mounted.
async fn rig(spool_size: &str) -> Option<Rig> {
    let sandbox = Sandbox::new().unwrap();
    let spool = sandbox.path().join("spool-collector");
    let mount = match TmpfsMount::mount(&spool, spool_size) {
        Ok(m) => m,
        Err(e) => {
            assert!(std::env::var("CI").is_err(), "CI runs as root: {e:#}");
            eprintln!("skipping: cannot mount a tmpfs for the spool (not root?): {e:#}");
            return None;
        }
    };
    let db_url = format!("sqlite://{}", sandbox.path().join("full.db").display());
    let storer = sandbox.storer("storer", &db_url, &[]).await.unwrap();
    let proxy = start_proxy(storer.grpc).await;
    let metrics = SocketAddr::from(([127, 0, 0, 1], free_port().unwrap()));
    let storer_url = format!("http://{}", proxy.addr);
    let collector = sandbox
        .collector(
            "collector",
            std::slice::from_ref(&storer_url),
            &[
                "--set".to_owned(),
                WINDOW.to_owned(),
                "--set".to_owned(),
                format!("metrics_listen={metrics}"),
            ],
        )
        .await
        .unwrap();
    Some(Rig {
        collector,
        proxy,
        _storer: storer,
        mount,
        metrics,
        storer_url,
        db_url,
        sandbox,
    })
}

/// A small in-memory window so the backlog goes to the spool.
const WINDOW: &str = "max_unacked_batches=4";

/// Cuts the link and sends the burst of [`N`] packets; returns the collector's counters once
/// the spool's disk is full (records dropped) and every packet is queued.
async fn fill_while_cut(rig: &Rig) -> HashMap<String, u64> {
    let collector = &rig.collector;
    rig.proxy.up.send_replace(false);
    send_tcp_paced(collector.hep.unwrap(), "full", N, 4_000)
        .await
        .unwrap();
    wait_until(
        "the burst queued and the spool full",
        Duration::from_secs(60),
        || async {
            let c = member_counters(collector.grpc).await?;
            Ok(counter(&c, "records_queued") == u64::from(N) && counter(&c, "dropped") > 0)
        },
    )
    .await
    .unwrap_or_else(|e| {
        panic!(
            "{e:#}: {}\ncollector log:\n{}",
            counters_now(&collector.grpc),
            collector.process.log_text()
        )
    });
    // The last partial batch is sealed after `batch_max_delay`.
    tokio::time::sleep(Duration::from_secs(2)).await;
    member_counters(collector.grpc).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spool_disk_full_stores_once_or_counts_the_loss() {
    let Some(mut rig) = rig("3m").await else {
        return;
    };
    let full = fill_while_cut(&rig).await;
    let hep = rig.collector.hep.unwrap();
    eprintln!("collector counters with the spool disk full: {full:?}");
    let dropped = counter(&full, "dropped");
    let by_spool: u64 = full
        .iter()
        .filter(|(k, _)| k.starts_with("dropped.spool"))
        .map(|(_, v)| v)
        .sum();
    assert_eq!(dropped, by_spool, "every drop has a spool reason: {full:?}");
    assert!(counter(&full, "records_spooled") > 0, "{full:?}");

    // /metrics says the same, by reason.
    let scraped = scrape(rig.metrics).await.unwrap();
    for (key, value) in full.iter().filter(|(k, _)| k.starts_with("dropped.")) {
        let reason = key.trim_start_matches("dropped.");
        let series = format!("sipcapture_collector_dropped_total{{reason=\"{reason}\"}}");
        assert_eq!(scraped.get(&series), *value as f64, "{series}");
    }
    let log = rig.collector.process.log_text();
    assert!(
        log.contains("records dropped: the spool cannot take them"),
        "the loss is logged:\n{log}"
    );

    // The link comes back: everything that was not dropped is stored, exactly once.
    rig.proxy.up.send_replace(true);
    let db = open_db(&rig.db_url).await.unwrap();
    let expected = u64::from(N) - dropped;
    stored_exactly_once(&db, expected, Duration::from_secs(120), || {
        format!(
            "sent {N}, dropped {dropped}; counters {}\ncollector log:\n{}",
            counters_now(&rig.collector.grpc),
            rig.collector.process.log_text()
        )
    })
    .await
    .unwrap();

    // The spool drained and frees its disk: new traffic is stored again, nothing else dropped.
    send_tcp_paced(hep, "after", AFTER, 2_000).await.unwrap();
    let total = expected + u64::from(AFTER);
    stored_exactly_once(&db, total, Duration::from_secs(60), || {
        rig.collector.process.log_text()
    })
    .await
    .unwrap();
    let end = wait_acked(rig.collector.grpc, total).await.unwrap();
    eprintln!("collector counters after the drain: {end:?}");
    assert_eq!(counter(&end, "dropped"), dropped, "{end:?}");
    assert_eq!(counter(&end, "records_acked"), total, "{end:?}");

    // The spool that once filled its disk still carries a restart: cut again, a smaller burst
    // goes to the spool, the collector stops cleanly (its window joins the spool) and starts
    // again on the same spool, then the link comes back.
    rig.proxy.up.send_replace(false);
    send_tcp_paced(hep, "again", AGAIN, 2_000).await.unwrap();
    let queued = u64::from(N + AFTER + AGAIN);
    wait_until(
        "the second burst queued",
        Duration::from_secs(60),
        || async {
            Ok(counter(
                &member_counters(rig.collector.grpc).await?,
                "records_queued",
            ) == queued)
        },
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let stopping = member_counters(rig.collector.grpc).await.unwrap();
    eprintln!("collector counters before the restart: {stopping:?}");
    let dropped_again = counter(&stopping, "dropped") - dropped;
    let log = rig.stop_collector();
    assert!(log.contains("kept in the spool"), "{log}");
    let restarted = rig.restart_collector().await;
    stored_exactly_once(
        &db,
        total + u64::from(AGAIN) - dropped_again,
        Duration::from_secs(60),
        || restarted.process.log_text(),
    )
    .await
    .unwrap();
    let after_restart = member_counters(restarted.grpc).await.unwrap();
    eprintln!("restarted collector counters: {after_restart:?}");
    assert_eq!(
        counter(&after_restart, "spool_corrupt_frames"),
        0,
        "no torn frame left by the full disk: {after_restart:?}"
    );
    assert_eq!(counter(&after_restart, "dropped"), 0, "{after_restart:?}");
    db.close().await.unwrap();
}

/// A collector stopped while its spool's disk is full and the link is cut cannot keep its
/// in-memory window: that loss must be counted and logged with its size (`records=K` on a line
/// that says they are lost), and what was spooled before the disk filled must come back whole
/// after the restart (no torn frame): stored = sent − dropped − lost, exactly once. The tmpfs
/// grows before the restart: a collector does not start on a full spool disk (it writes its
/// stream file at start-up), so the operator frees space first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spool_disk_full_at_shutdown_counts_the_loss() {
    let Some(mut rig) = rig("3m").await else {
        return;
    };
    let full = fill_while_cut(&rig).await;
    eprintln!("collector counters with the spool disk full: {full:?}");
    let dropped = counter(&full, "dropped");
    let log = rig.stop_collector();
    let lost = records_lost_in(&log);
    eprintln!("dropped {dropped} while running, {lost} logged lost at shutdown");
    // The collector needs a little space to start (its stream file); the operator frees some.
    rig.mount.resize("4m").unwrap();
    let restarted = rig.restart_collector().await;
    let db = open_db(&rig.db_url).await.unwrap();
    let expected = u64::from(N) - dropped - lost;
    stored_exactly_once(&db, expected, Duration::from_secs(60), || {
        let shutdown: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("shutdown") || l.contains("spool"))
            .rev()
            .take(5)
            .collect();
        format!(
            "sent {N}, dropped {dropped}, logged lost {lost}; the first collector's last spool \
             and shutdown lines:\n{}\nrestarted collector counters {}",
            shutdown.join("\n"),
            counters_now(&restarted.grpc)
        )
    })
    .await
    .unwrap();
    let after_restart = wait_acked(restarted.grpc, expected).await.unwrap();
    eprintln!("restarted collector counters: {after_restart:?}");
    assert_eq!(
        counter(&after_restart, "spool_corrupt_frames"),
        0,
        "no torn frame left by the full disk: {after_restart:?}"
    );
    db.close().await.unwrap();
}

/// Records a log says were lost: the sum of `records=K` over the lines that say "lost".
fn records_lost_in(log: &str) -> u64 {
    log.lines()
        .filter(|l| l.contains("lost"))
        .filter_map(|l| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix("records=")?.parse::<u64>().ok())
        })
        .sum()
}

/// The collector's counters for a failure message (blocking: only called while panicking).
fn counters_now(addr: &SocketAddr) -> String {
    let addr = *addr;
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .ok()
            .and_then(|rt| rt.block_on(member_counters(addr)).ok())
            .map(|c| format!("{c:?}"))
            .unwrap_or_default()
    })
    .join()
    .unwrap_or_default()
}
