// The Node.js real app: plain Express, no OpenTelemetry code at all. Run with
//   node --require @opentelemetry/auto-instrumentations-node/register app.js PORT
// (scripts/apps.sh node PORT); the OTLP exporters are configured by OTEL_* variables.
// Routes: /ok (200), /boom (500), /slow (200 after ~300 ms), /users/:id (200).
'use strict';
const express = require('express');

const app = express();
app.get('/ok', (req, res) => res.send('ok'));
app.get('/boom', (req, res) => res.status(500).send('boom'));
app.get('/slow', (req, res) => setTimeout(() => res.send('slow'), 300));
app.get('/users/:id', (req, res) => res.send(`user ${req.params.id}`));

const server = app.listen(Number(process.argv[2]), '127.0.0.1');
process.on('SIGTERM', () => server.close());
