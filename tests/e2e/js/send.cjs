// Sends traces, logs and metrics as OTLP/HTTP JSON with the OpenTelemetry JS SDK's own
// exporters (their default encoding is JSON), to check the otlp receiver against a real
// JSON client. Installed by scripts/js-sdk.sh; run with NODE_PATH=<cache>/node_modules.
//
//   node send.cjs http://127.0.0.1:4318 sent.jsonl
//
// Every export request is also written to sent.jsonl (one OTLP JSON request per line,
// made by the SDK's own JSON serializer: what went over the wire) so the test can
// compare it with what the pipeline wrote.
'use strict';

const fs = require('fs');
const { BasicTracerProvider, BatchSpanProcessor } = require('@opentelemetry/sdk-trace-base');
const { OTLPTraceExporter } = require('@opentelemetry/exporter-trace-otlp-http');
const { LoggerProvider, BatchLogRecordProcessor } = require('@opentelemetry/sdk-logs');
const { OTLPLogExporter } = require('@opentelemetry/exporter-logs-otlp-http');
const { MeterProvider, PeriodicExportingMetricReader } = require('@opentelemetry/sdk-metrics');
const { OTLPMetricExporter } = require('@opentelemetry/exporter-metrics-otlp-http');
const { resourceFromAttributes } = require('@opentelemetry/resources');
const { trace, context, SpanKind, SpanStatusCode } = require('@opentelemetry/api');
const {
  JsonTraceSerializer, JsonLogsSerializer, JsonMetricsSerializer,
} = require('@opentelemetry/otlp-transformer');

const [base, out] = process.argv.slice(2);
const sent = fs.openSync(out, 'w');

// Record what each export sends, then let the real exporter send it.
function recording(exporter, signal, serializer) {
  const exportOrig = exporter.export.bind(exporter);
  exporter.export = (items, done) => {
    const body = Buffer.from(serializer.serializeRequest(items)).toString('utf8');
    exportOrig(items, (result) => {
      fs.writeSync(sent, JSON.stringify({ signal, code: result.code, body }) + '\n');
      done(result);
    });
  };
  return exporter;
}

// Deterministic ids, so the test can check them independently of any decoder.
let traceSeq = 0;
let spanSeq = 0;
const idGenerator = {
  generateTraceId: () => `5b8efff798038103d269b633${(traceSeq++).toString(16).padStart(8, '0')}`,
  generateSpanId: () => `eee19b7e${(spanSeq++).toString(16).padStart(8, '0')}`,
};
const resource = resourceFromAttributes({
  'service.name': 'js-client', 'service.version': '1.2.3', 'test.case': 'js-json',
});

async function main() {
  // Traces: 4 traces x 5 spans, 10 attributes each, parent/child, one error per trace.
  const traceExporter = recording(new OTLPTraceExporter({ url: `${base}/v1/traces` }),
    'traces', JsonTraceSerializer);
  const tracerProvider = new BasicTracerProvider({
    resource, idGenerator,
    spanProcessors: [new BatchSpanProcessor(traceExporter, { maxExportBatchSize: 7 })],
  });
  const tracer = tracerProvider.getTracer('e2e-js', '0.1.0');
  for (let t = 0; t < 4; t++) {
    const root = tracer.startSpan(`GET /orders/${t}`, {
      kind: SpanKind.SERVER, startTime: [1700000000 + t, 123456789],
      attributes: { 'http.method': 'GET', 'http.status_code': 200, trace: t },
    });
    const ctx = trace.setSpan(context.active(), root);
    for (let c = 0; c < 4; c++) {
      const attrs = {};
      for (let a = 0; a < 10; a++) attrs[`attr.${a}`] = a % 2 ? `v${t}.${c}.${a}` : a * 1.5;
      attrs['child.index'] = c;
      attrs['flag'] = c % 2 === 0;
      attrs['list'] = ['a', 'b', `${c}`];
      const child = tracer.startSpan(`db query ${c}`,
        { kind: SpanKind.CLIENT, startTime: [1700000000 + t, 200000000 + c], attributes: attrs },
        ctx);
      child.addEvent('rows', { n: c * 10 }, [1700000000 + t, 250000000 + c]);
      if (c === 3) child.setStatus({ code: SpanStatusCode.ERROR, message: 'timeout' });
      child.end([1700000000 + t, 300000000 + c]);
    }
    root.end([1700000000 + t, 900000000]);
  }
  await tracerProvider.forceFlush();
  await tracerProvider.shutdown();

  // Logs: 25 records, every other one inside a span context.
  const logExporter = recording(new OTLPLogExporter({ url: `${base}/v1/logs` }),
    'logs', JsonLogsSerializer);
  const loggerProvider = new LoggerProvider({
    resource,
    processors: [new BatchLogRecordProcessor({ exporter: logExporter, maxExportBatchSize: 10 })],
  });
  const logger = loggerProvider.getLogger('e2e-js-logs', '0.1.0');
  const spanCtx = trace.setSpanContext(context.active(), {
    traceId: '0af7651916cd43dd8448eb211c80319c', spanId: 'b7ad6b7169203331', traceFlags: 1,
  });
  for (let i = 0; i < 25; i++) {
    logger.emit({
      timestamp: [1700000100, i * 1000],
      severityNumber: 9 + (i % 3) * 4, severityText: ['INFO', 'WARN', 'ERROR'][i % 3],
      body: `request ${i} done`,
      attributes: { 'user.id': `u${i}`, attempt: i % 4, ok: i % 5 !== 0 },
      context: i % 2 === 0 ? spanCtx : undefined,
    });
  }
  await loggerProvider.forceFlush();
  await loggerProvider.shutdown();

  // Metrics: a counter, a histogram and an up-down counter, exported once.
  const metricExporter = recording(new OTLPMetricExporter({ url: `${base}/v1/metrics` }),
    'metrics', JsonMetricsSerializer);
  const reader = new PeriodicExportingMetricReader(
    { exporter: metricExporter, exportIntervalMillis: 3600000 });
  const meterProvider = new MeterProvider({ resource, readers: [reader] });
  const meter = meterProvider.getMeter('e2e-js-metrics', '0.1.0');
  const requests = meter.createCounter('http.server.requests');
  const latency = meter.createHistogram('http.server.duration', { unit: 'ms' });
  const inflight = meter.createUpDownCounter('http.server.active_requests');
  for (let i = 0; i < 30; i++) {
    const attrs = { 'http.route': `/r${i % 3}`, 'http.status_code': i % 7 ? 200 : 500 };
    requests.add(1, attrs);
    latency.record(i * 3.7, attrs);
    inflight.add(i % 2 ? 1 : -1, { 'http.route': `/r${i % 3}` });
  }
  await meterProvider.forceFlush();
  await meterProvider.shutdown();
  fs.closeSync(sent);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
