// Package runtime is shoal's native Linux container runtime. It knows nothing
// of the cluster: callers describe a container with the sub-packages' own
// types and the cluster agent translates from the app spec.
//
//   - runtime/image: content-addressed image store, import and safe unpack
//   - runtime/rootfs: per-container writable overlay over an image rootfs
//   - runtime/cgroup: cgroup v1, hybrid and v2 limits (containerd/cgroups/v3)
//   - runtime/linux: namespaces, the container init and process lifecycle
//   - runtime/supervise: restart policy decisions and the supervision loop
//   - runtime/exit: how a container's process ended, shared by the runtime,
//     the monitors and the supervision loop
//   - runtime/health: http, tcp and exec health checks, from inside the
//     container's network namespace
//   - runtime/monitor: the per-container monitor process that lets
//     containers outlive the daemon, and their adoption by the next one
//   - runtime/logs: size-rotated container logs, tail and follow
//   - runtime/seccomp: the default seccomp filter, per architecture
package runtime
