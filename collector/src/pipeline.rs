//! Wiring only: the queue between inputs and the exporter, the spawns, and the shutdown order
//! (inputs stop → the queue closes → the exporter seals, delivers and waits for acks → done).

use std::sync::Arc;
use std::time::Duration;

use sipcapture_runtime::counters::Counters;
use sipcapture_runtime::status::CaptureSwitch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::CollectorConfig;
use crate::events::{InternalEvent, SpoolCorruptFrames};
use crate::export::lanes::LaneQueues;
use crate::export::spool::{Spool, SpoolError};
use crate::export::storers::{Storers, refresh_dns};
use crate::export::{self, ExportConfig, LaneStats};
use crate::forward::{ForwardSettings, Forwarder};
use crate::gate::Gate;
use crate::gate::rate_limit::RateLimiter;
use crate::hook::{Hook, Hooks};
use crate::ingest::Ingest;
use crate::record::RecordBuilder;
use crate::source::hep_listener::{self, BoundAddrs, ListenConfig, ListenError, TlsListenConfig};
use crate::source::ipip::{self, IpipError};
use crate::source::mirror::{self, MirrorError};

/// How long a shutting-down collector keeps trying to deliver what it holds.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(15);

/// Why the pipeline could not start.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// A listener could not bind.
    #[error(transparent)]
    Listen(#[from] ListenError),
    /// The spool directory is unusable.
    #[error("spool_dir: {0}")]
    Spool(#[from] SpoolError),
    /// Mirror-port capture (`raw_moni_capture_on`) could not start.
    #[error(transparent)]
    Mirror(#[from] MirrorError),
    /// IPIP capture (`raw_ipip_capture_on`) could not start.
    #[error(transparent)]
    Ipip(#[from] IpipError),
    /// Forward rules could not start.
    #[error(transparent)]
    Forward(#[from] sipcapture_runtime::config::ConfigError),
}

/// The Lua hook (reloaded on SIGHUP and file change) and the forwarder, as configured.
fn start_hooks(
    config: &CollectorConfig,
    counters: &Arc<Counters>,
    stop: &CancellationToken,
) -> Result<Hooks, PipelineError> {
    let hook_settings = config.hook_settings();
    let forwarder = if config.forward.is_empty() && hook_settings.is_none() {
        None
    } else {
        let settings = ForwardSettings {
            queue: config.forward_queue,
            tls_ca: config.forward_tls_ca.clone(),
            capture_id: config.hep_capture_id,
        };
        Some(Forwarder::start(
            &config.forward,
            settings,
            counters.clone(),
            stop.child_token(),
        )?)
    };
    let hook = hook_settings.map(|settings| {
        let hook = Hook::new(settings, forwarder.clone(), counters.clone());
        tokio::spawn(hook.clone().watch(stop.child_token()));
        hook
    });
    Ok(Hooks { hook, forwarder })
}

/// A running collector pipeline (inputs and exporter; gRPC is served by the caller).
#[derive(Debug)]
pub struct Pipeline {
    /// Addresses the HEP listeners bound.
    pub bound: BoundAddrs,
    /// Counters of inputs and exporter.
    pub counters: Arc<Counters>,
    /// The shared per-packet path (file imports feed it directly).
    pub ingest: Arc<Ingest>,
    inputs: TaskTracker,
    stop_inputs: CancellationToken,
    exporters: Vec<JoinHandle<()>>,
}

impl Pipeline {
    /// Starts the inputs and the exporter.
    pub fn start(
        config: &CollectorConfig,
        switch: Arc<CaptureSwitch>,
        counters: Arc<Counters>,
    ) -> Result<Self, PipelineError> {
        let lanes = config.lane_count();
        let (queue, lane_inputs) = LaneQueues::new(
            lanes,
            config.queue_capacity.div_ceil(lanes),
            config.storer_placement,
        );
        let inputs = TaskTracker::new();
        let stop_inputs = CancellationToken::new();
        let hooks = start_hooks(config, &counters, &stop_inputs)?;
        let watchers = queue.watchers();
        let capacity = config.queue_capacity.div_ceil(lanes) as i64;
        counters.gauge_fn("queue_depth", move |report| {
            for (lane, weak) in watchers.iter().enumerate() {
                if let Some(sender) = weak.upgrade() {
                    let depth = sender.max_capacity() - sender.capacity();
                    report(&lane.to_string(), depth as i64);
                }
            }
        });
        counters.gauge_fn("queue_capacity", move |report| {
            for lane in 0..lanes {
                report(&lane.to_string(), capacity);
            }
        });
        let lane_stats: Vec<Arc<LaneStats>> =
            (0..lanes).map(|_| Arc::new(LaneStats::default())).collect();
        let read = |pick: fn(&LaneStats) -> &std::sync::atomic::AtomicU64| {
            let stats = lane_stats.clone();
            move |report: &mut dyn FnMut(&str, i64)| {
                for (lane, s) in stats.iter().enumerate() {
                    let v = pick(s).load(std::sync::atomic::Ordering::Relaxed);
                    report(&lane.to_string(), i64::try_from(v).unwrap_or(i64::MAX));
                }
            }
        };
        counters.gauge_fn("unacked_batches", read(|s| &s.unacked));
        if !config.spool_dir.as_os_str().is_empty() {
            counters.gauge_fn("spool_bytes", read(|s| &s.spool_bytes));
            counters.gauge_fn("spool_segments", read(|s| &s.spool_segments));
        }
        let ingest = Arc::new(Ingest {
            builder: RecordBuilder {
                capture_node: config.capture_node.clone(),
                collector_id: config.collector_id.clone(),
                sip: config.extract_config(),
                max_inflated_payload: config.max_inflated_payload,
            },
            gate: Gate {
                switch,
                hep_capture_on: config.hep_capture_on,
                auth_key: config.hep_auth_key.as_ref().map(|k| k.as_bytes().to_vec()),
                rate_limit: RateLimiter::new(
                    config.hep_rate_limit,
                    config.hep_rate_burst,
                    config.hep_rate_sources,
                    std::time::Instant::now(),
                ),
            },
            packets: crate::events::PacketCounters::new(&counters),
            counters: counters.clone(),
            queue,
            hooks,
        });
        // Stops the inputs already started if a later one fails to start.
        let stop_on_error = stop_inputs.clone().drop_guard();
        // Raw capture opens its sockets first: a missing CAP_NET_RAW fails start-up
        // before anything listens.
        if let Some(mirror_config) = config.mirror_config() {
            mirror::start(&mirror_config, ingest.clone(), &inputs, &stop_inputs)?;
        }
        if let Some(ipip_config) = config.ipip_config() {
            ipip::start(&ipip_config, ingest.clone(), &inputs, &stop_inputs)?;
        }
        let listen = ListenConfig {
            addr: config.hep_listen,
            udp: config.hep_udp,
            tcp: config.hep_tcp,
            udp_sockets: config.udp_socket_count(),
            udp_recv_buffer: config.udp_recv_buffer,
            tcp_max_frame: config.tcp_max_frame,
            tcp_max_connections: config.tcp_max_connections,
            tcp_max_connections_per_ip: config.tcp_max_connections_per_ip,
            tcp_idle_timeout: Duration::from_secs(config.tcp_idle_timeout),
            tcp_frame_timeout: Duration::from_secs(config.tcp_frame_timeout),
            tls: match (
                &config.hep_tls_listen,
                &config.hep_tls_cert,
                &config.hep_tls_key,
            ) {
                (Some(addr), Some(cert), Some(key)) => Some(TlsListenConfig {
                    addr: *addr,
                    cert: cert.clone(),
                    key: key.clone(),
                }),
                _ => None,
            },
        };
        let bound = hep_listener::start(&listen, ingest.clone(), &inputs, &stop_inputs)?;
        inputs.close();
        tracing::info!(udp = ?bound.udp, tcp = ?bound.tcp, tls = ?bound.tls, "hep listeners ready");
        for url in &config.storer {
            config
                .service
                .grpc_client_tls
                .warn_if_plaintext("storer", url);
        }
        let storers = Arc::new(Storers::with_tls(
            config.storer_placement,
            &config.storer,
            config.service.grpc_client_tls.clone(),
        ));
        if !config.storer_dns.is_empty() {
            tokio::spawn(refresh_dns(
                storers.clone(),
                config.storer.clone(),
                config.storer_dns.clone(),
                Duration::from_secs(config.storer_dns_refresh),
                stop_inputs.child_token(),
            ));
        }
        let mut exporters = Vec::with_capacity(lanes);
        for (lane, records) in lane_inputs.into_iter().enumerate() {
            let base_id = || format!("{}-{:016x}", config.collector_id, rand::random::<u64>());
            let spool = if config.spool_dir.as_os_str().is_empty() {
                None
            } else {
                let dir = config.spool_dir.join(format!("lane-{lane}"));
                let (spool, recovered) = Spool::open(
                    &dir,
                    config.spool_max_bytes / lanes as u64,
                    config.spool_segment_bytes,
                    base_id,
                )?;
                if recovered.batches > 0 || recovered.corrupt > 0 {
                    tracing::info!(
                        lane,
                        batches = recovered.batches,
                        records = recovered.records,
                        corrupt = recovered.corrupt,
                        dir = %dir.display(),
                        "spool recovered; replaying"
                    );
                    SpoolCorruptFrames {
                        frames: recovered.corrupt,
                    }
                    .emit(&counters);
                }
                Some(spool)
            };
            let stream_id = spool
                .as_ref()
                .map_or_else(base_id, |s| s.stream_id().to_owned());
            let export_cfg = ExportConfig {
                lane: lane as u64,
                collector_id: config.collector_id.clone(),
                stream_id,
                batch_max_records: config.batch_max_records,
                batch_max_bytes: config.batch_max_bytes,
                batch_max_delay: Duration::from_millis(config.batch_max_delay_ms),
                max_unacked: config.max_unacked_batches,
                drain_timeout: DRAIN_TIMEOUT,
                token: config
                    .service
                    .token_for(sipcapture_runtime::auth::Role::Collector),
            };
            exporters.push(tokio::spawn(export::run(
                export_cfg,
                storers.clone(),
                spool,
                records,
                counters.clone(),
                lane_stats.get(lane).cloned().unwrap_or_default(),
            )));
        }
        stop_on_error.disarm();
        Ok(Pipeline {
            bound,
            counters,
            ingest,
            inputs,
            stop_inputs,
            exporters,
        })
    }

    /// Ordered shutdown: stop the inputs, let the exporter deliver what it holds, return.
    pub async fn shutdown(self) {
        self.stop_inputs.cancel();
        self.inputs.wait().await;
        // The last handle on the queue: dropping it lets the exporter see the input close.
        drop(self.ingest);
        for exporter in self.exporters {
            if let Err(e) = exporter.await {
                tracing::error!(error = %e, "exporter task failed");
            }
        }
    }
}
