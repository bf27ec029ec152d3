"""What receivers share, one concern per module (import the module you need: this
package imports nothing, so a receiver that only counts outcomes does not load aiohttp):

- `obs`: counting what a receiver accepted, refused and rejected (`ReceiverObs`), and
  the metric specs of those counts;
- `body`: request bodies, inflated per Content-Encoding with a size limit;
- `http`: an aiohttp server on one endpoint (`HTTPServer`) and its settings;
- `auth`: server-side authentication (`Authenticator`, `auth_middleware`) and gRPC
  server credentials.
"""
