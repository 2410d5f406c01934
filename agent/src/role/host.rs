//! Host metrics (CPU, memory, load, filesystems, network) as OpenTelemetry observable gauges
//! and counters named after the `system.*` semantic conventions, read with sysinfo at each
//! metric export.

use opentelemetry::KeyValue;
use std::sync::{Arc, Mutex};
use sysinfo::{Disks, Networks, System};

struct Host {
    sys: System,
    disks: Disks,
    nets: Networks,
}

/// Registers the host instruments on `m`.
pub fn register(m: &opentelemetry::metrics::Meter) {
    let host = Arc::new(Mutex::new(Host {
        sys: System::new(),
        disks: Disks::new_with_refreshed_list(),
        nets: Networks::new_with_refreshed_list(),
    }));
    let h = host.clone();
    let _ = m
        .f64_observable_gauge("system.cpu.utilization")
        .with_unit("1")
        .with_callback(move |o| {
            if let Ok(mut h) = h.lock() {
                h.sys.refresh_cpu_usage();
                o.observe(f64::from(h.sys.global_cpu_usage()) / 100.0, &[]);
            }
        })
        .build();
    let h = host.clone();
    let _ = m
        .u64_observable_gauge("system.memory.usage")
        .with_unit("By")
        .with_callback(move |o| {
            if let Ok(mut h) = h.lock() {
                h.sys.refresh_memory();
                o.observe(
                    h.sys.used_memory(),
                    &[KeyValue::new("system.memory.state", "used")],
                );
                o.observe(
                    h.sys.available_memory(),
                    &[KeyValue::new("system.memory.state", "free")],
                );
            }
        })
        .build();
    let _ = m
        .f64_observable_gauge("system.cpu.load_average.1m")
        .with_callback(|o| o.observe(System::load_average().one, &[]))
        .build();
    let h = host.clone();
    let _ = m
        .u64_observable_gauge("system.filesystem.usage")
        .with_unit("By")
        .with_callback(move |o| {
            if let Ok(mut h) = h.lock() {
                h.disks.refresh(true);
                for d in h.disks.list() {
                    let mount = d.mount_point().display().to_string();
                    let used = d.total_space().saturating_sub(d.available_space());
                    o.observe(
                        used,
                        &[
                            KeyValue::new("system.filesystem.mountpoint", mount.clone()),
                            KeyValue::new("system.filesystem.state", "used"),
                        ],
                    );
                    o.observe(
                        d.available_space(),
                        &[
                            KeyValue::new("system.filesystem.mountpoint", mount),
                            KeyValue::new("system.filesystem.state", "free"),
                        ],
                    );
                }
            }
        })
        .build();
    let h = host;
    let _ = m
        .u64_observable_counter("system.network.io")
        .with_unit("By")
        .with_callback(move |o| {
            if let Ok(mut h) = h.lock() {
                h.nets.refresh(true);
                for (name, d) in h.nets.list() {
                    o.observe(
                        d.total_received(),
                        &[
                            KeyValue::new("network.interface.name", name.clone()),
                            KeyValue::new("network.io.direction", "receive"),
                        ],
                    );
                    o.observe(
                        d.total_transmitted(),
                        &[
                            KeyValue::new("network.interface.name", name.clone()),
                            KeyValue::new("network.io.direction", "transmit"),
                        ],
                    );
                }
            }
        })
        .build();
}
