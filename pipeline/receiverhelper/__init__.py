"""What receivers share, one concern per module (import the module you need: this
package imports nothing, so a receiver that only counts outcomes does not load aiohttp):

- `obs`: counting what a receiver accepted, refused and rejected (`ReceiverObs`), and
  the metric specs of those counts;
- `body`: request bodies, inflated per Content-Encoding with a size limit;
- `http`: an aiohttp server on one endpoint (`HTTPServer`) with its connection
  budgets (timeouts, max_connections), its settings, and `read_body` (a body read
  within the byte budget, refused while the memory limiter refuses);
- `budget`: bytes held by request bodies in flight, per listener and process-wide;
- `pressure`: the memory limiters' refusal and the event loop's lag, shared state
  written by the memory_limiter and the service, read by listeners and health;
- `grpcserver`: gRPC server keepalive settings and options, and the same
  admission for gRPC messages;
- `auth`: server-side authentication (`Authenticator`, `auth_middleware`) and gRPC
  server credentials.
"""
