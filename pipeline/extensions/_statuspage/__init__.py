"""The status page the `health` extension serves at `/status` (HTML) and `/status.json`.

Not a component: a helper package of `pipeline.extensions.health`. Modules:
`sampler` (throughput from the pipeline's own counters), `view` (the snapshot:
the view model), `render` (HTML and SVG), `page` (settings and handlers),
`sources` (reading a section's state from the components by shape).

```yaml
extensions:
  health:
    endpoint: 0.0.0.0:13133
    status_page:
      refresh: 10s           # the page reloads itself this often (0: never)
      sample_interval: 5s    # how often the telemetry counters are sampled
      throughput_window: 1m  # items/s are averaged over this window
```

What it shows, all of it server-rendered (inline CSS and SVG, no external
assets, no JavaScript; the page refreshes itself with `<meta http-equiv=refresh>`):

- overall status (healthy / degraded / unhealthy), version, uptime;
- each pipeline with its receivers → processors → exporters, each
  component's health, throughput (items/s over the last minute, derived from
  the pipeline's own counters sampled every `sample_interval`: receivers'
  `otelpipe_receiver_accepted_items`, the batch processor's
  `otelpipe_processor_batch_send_size` sum, connectors'
  `otelpipe_connector_emitted_points`, exporters' `otelpipe_exporter_sent_items`
  and `…_send_failed_items`), queue depth and last error (scrubbed);
- each SLO of every `slo` connector: objective, SLI per window, error budget
  remaining, burn rates, firing alerts, and a burn-down chart of the budget
  over the SLO period (`<svg class="burndown" data-slo="NAME">`);
- each `tail_sampling` processor (module `sampling`): traces waiting, decisions,
  late spans, evictions, each policy's votes (`<section class="card sampling">`);
- each `logpatterns` connector (module `patterns`): top patterns by count per
  service, patterns new in the last hour with their first line, rate changes
  (`<section class="card patterns">`).

`/status.json` carries the same data. Only component ids, health fields and
SLO state are shown — never configuration, so no secrets; every text is
HTML-escaped.
"""
