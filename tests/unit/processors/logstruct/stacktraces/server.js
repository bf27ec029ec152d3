// Generates node_logged.txt (errors printed by console.error: a TypeError and an Error
// with a cause, between log lines) and node_uncaught.txt (a crash: uncaught TypeError).
// Run by generate.sh: node server.js [uncaught]
'use strict';

function log(level, msg) {
  console.log(`${new Date().toISOString()} ${level} ${msg}`);
}

function total(cart) {
  return cart.items.length;
}

function handle(req) {
  try {
    return total(req.cart);
  } catch (err) {
    throw new Error(`cannot price order ${req.id}`, { cause: err });
  }
}

if (process.argv[2] === 'uncaught') {
  total(null);
}
log('info', 'order received: id=7');
try {
  total(undefined);
} catch (err) {
  log('error', 'request failed');
  console.log(err);
}
try {
  handle({ id: 7, cart: null });
} catch (err) {
  log('error', 'checkout failed');
  console.log(err);
}
log('info', 'order 7 done');
