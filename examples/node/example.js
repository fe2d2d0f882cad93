#!/usr/bin/env node
'use strict';
// A command-line example on top of facesearch.js: enroll raw vectors, search by vector
// or by photo, read the server's stats. `node example.js --help` for usage.

const fs = require('node:fs');
const path = require('node:path');
const { parseArgs } = require('node:util');
const { connect, FaceSearchError, statusName } = require('./facesearch');

const PROGRAM = path.basename(__filename);
const USAGE = `usage: node ${PROGRAM} [--json] [--server HOST:PORT] COMMAND ...

commands:
  add-vectors FILE.json [--batch-size N]
      FILE.json holds [{"vector": [0.1, ...], "label": "alice", "id": "7", "metadata": "..."}, ...];
      label, id and metadata are optional (ids on every item or on none)
  query-vector '[0.1, ...]' [-k N] [--ef N] [--exact]
  query-image PHOTO [-k N] [--ef N] [--exact]
  stats

--json prints one line of JSON: the response as decoded (field names as in the .proto,
uint64 ids and counts as decimal strings).

environment: FSCLIENT_SERVER (default 127.0.0.1:50051), FSCLIENT_TOKEN (bearer token),
FSCLIENT_TLS_CA (PEM file: connect with TLS, trusting this CA), FSCLIENT_TLS_CERT and
FSCLIENT_TLS_KEY (PEM files: this client's certificate and key, for mutual TLS)`;

class UsageError extends Error {}

// Over TLS to an IP address (127.0.0.1:50051), grpc-js passes the IP as the TLS server
// name and Node warns that RFC 6066 forbids that (DEP0123), once per process, on stderr.
// The certificate is still checked against the IP; drop just that warning so stderr
// keeps to our own lines.
const emitWarning = process.emitWarning;
process.emitWarning = (warning, ...rest) => {
  const code = typeof rest[0] === 'object' ? rest[0]?.code : rest[1];
  if (code !== 'DEP0123') emitWarning.call(process, warning, ...rest);
};

function integer(text, name) {
  const value = Number(text);
  if (!Number.isInteger(value)) throw new UsageError(`${name} wants an integer, got ${text}`);
  return value;
}

function readJson(text, what) {
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new UsageError(`${what} is not valid JSON (${error.message})`);
  }
}

function queryOptions(values) {
  return {
    k: integer(values.k ?? '5', '-k'),
    ef: values.ef === undefined ? undefined : integer(values.ef, '--ef'),
    exact: values.exact ?? false,
  };
}

function printQuery(response, { json }) {
  if (json) {
    console.log(JSON.stringify(response));
    return;
  }
  response.results.forEach((matches, i) => {
    if (matches.face) {
      const { x, y, width, height } = matches.face.box ?? {};
      console.log(`face ${i + 1} at ${x},${y} (${width}x${height}):`);
    }
    if (!matches.neighbors.length) console.log('  (the index is empty)');
    matches.neighbors.forEach((n, j) => {
      const label = n.label || '(no label)';
      const match = n.match ? '  match' : '';
      console.log(`  ${j + 1}. id ${n.id}  ${label}  distance ${n.distance.toFixed(4)}${match}`);
    });
  });
  const ms = (seconds) => (seconds * 1000).toFixed(2);
  const embed = response.embed_seconds ? `, embedding ${ms(response.embed_seconds)} ms` : '';
  console.log(`search ${ms(response.search_seconds)} ms${embed}`);
}

const commands = {
  async 'add-vectors'(client, [file], values) {
    if (!file) throw new UsageError('add-vectors needs a JSON file');
    const items = readJson(fs.readFileSync(file, 'utf8'), file);
    if (!Array.isArray(items) || !items.every((item) => Array.isArray(item?.vector))) {
      throw new UsageError(`${file} must hold a JSON array of items, each with a "vector"`);
    }
    const withIds = items.filter((item) => item.id !== undefined).length;
    if (withIds && withIds !== items.length) {
      // Packed rows carry ids as a column: one for every row, or none at all.
      throw new UsageError(`${file}: ${withIds} of ${items.length} items have an id: all or none`);
    }
    const results = await client.addVectors(
      items.map((item) => item.vector),
      {
        labels: items.map((item) => item.label ?? ''),
        ids: withIds ? items.map((item) => item.id) : [],
        metadata: items.map((item) => item.metadata ?? ''),
        batchSize: integer(values['batch-size'] ?? '1000', '--batch-size'),
      },
    );
    const failed = results.filter((r) => r.outcome === 'error');
    const summary = {
      added: results.length - failed.length,
      failed: failed.length,
      // AddResult's oneof: `outcome` names the member that is set.
      results: results.map(({ outcome, id, error }) =>
        outcome === 'id'
          ? { id }
          : { error: { code: statusName(error.code), message: error.message } },
      ),
    };
    if (values.json) {
      console.log(JSON.stringify(summary));
    } else {
      console.log(`added ${summary.added} of ${results.length} vectors`);
      summary.results.forEach((r, i) => {
        if (r.error) console.log(`  item ${i}: ${r.error.code}: ${r.error.message}`);
      });
    }
    return failed.length ? 1 : 0;
  },

  async 'query-vector'(client, [vectorText], values) {
    if (!vectorText) throw new UsageError("query-vector needs a vector, e.g. '[0.1, 0.2]'");
    const vector = readJson(vectorText, 'the vector');
    if (!Array.isArray(vector)) throw new UsageError('the vector must be a JSON array of numbers');
    printQuery(await client.queryVector(vector, queryOptions(values)), values);
    return 0;
  },

  async 'query-image'(client, [photo], values) {
    if (!photo) throw new UsageError('query-image needs a photo file');
    printQuery(await client.queryImage(photo, queryOptions(values)), values);
    return 0;
  },

  async stats(client, _args, values) {
    const stats = await client.stats();
    if (values.json) {
      console.log(JSON.stringify(stats));
    } else {
      const model = stats.model ? `model ${stats.model}, ` : '';
      const index = `dim ${stats.dim}, ${stats.space}, ef ${stats.ef}`;
      console.log(`${stats.count} items (${stats.deleted} deleted), ${model}${index}`);
    }
    return 0;
  },
};

async function main(argv) {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      json: { type: 'boolean' },
      server: { type: 'string' },
      k: { type: 'string', short: 'k' },
      ef: { type: 'string' },
      exact: { type: 'boolean' },
      'batch-size': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const [name, ...args] = positionals;
  const command = Object.hasOwn(commands, name) ? commands[name] : undefined;
  if (!command) throw new UsageError(name ? `unknown command ${name}` : 'no command given');

  const client = connect(values.server, {
    token: process.env.FSCLIENT_TOKEN,
    tlsCa: process.env.FSCLIENT_TLS_CA,
    tlsCert: process.env.FSCLIENT_TLS_CERT,
    tlsKey: process.env.FSCLIENT_TLS_KEY,
  });
  try {
    return await command(client, args, values);
  } finally {
    client.close();
  }
}

main(process.argv.slice(2)).then(
  (status) => {
    process.exitCode = status;
  },
  (error) => {
    // One line on stderr: the gRPC status name and the server's details, or what was wrong.
    const usage = error instanceof UsageError || String(error.code).startsWith('ERR_PARSE_ARGS');
    let text = error instanceof FaceSearchError ? `${error.code}: ${error.details}` : error.message;
    if (usage) text += ` (node ${PROGRAM} --help for usage)`;
    console.error(`${PROGRAM}: ${text.replace(/\s*\n\s*/g, ' ')}`);
    process.exitCode = usage ? 2 : 1;
  },
);
