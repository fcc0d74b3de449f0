# workerd configuration of the Durable Object chat room (chat.js) for the benchmarks; started by
# bench/workerd.ts, which binds the socket with `--socket-addr http=127.0.0.1:<free port>` and puts
# the objects' storage in a temporary folder with `--directory-path do-storage=<folder>`. The
# address and path below are only placeholders for those.
using Workerd = import "/workerd/workerd.capnp";

const config :Workerd.Config = (
  services = [
    (name = "chat", worker = .chatWorker),
    (name = "do-storage", disk = (path = "/nonexistent/dormouse-workerd-storage", writable = true)),
  ],
  sockets = [
    (name = "http", address = "127.0.0.1:0", http = (), service = "chat"),
  ],
);

const chatWorker :Workerd.Worker = (
  compatibilityDate = "2026-11-17",
  modules = [
    (name = "chat.js", esModule = embed "chat.js"),
  ],
  durableObjectNamespaces = [
    # Evicted after 10 s idle (workerd's default; no preventEviction): hibernation is real.
    (className = "ChatRoom", uniqueKey = "dormouse-bench-chat-room"),
  ],
  durableObjectStorage = (localDisk = "do-storage"),
  bindings = [
    (name = "ROOMS", durableObjectNamespace = "ChatRoom"),
  ],
);
