'use strict';
// A small promise-based client for the facesearch gRPC server.
//
// The service definition is loaded at run time from the repository's own
// protos/facesearch/v1/facesearch.proto (no generated code, no copy of the proto),
// so this client always speaks the same contract as the server beside it.

const fs = require('node:fs');
const path = require('node:path');
const { once } = require('node:events');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const DEFAULT_SERVER = '127.0.0.1:50051';
const PROTO_ROOT = path.join(__dirname, '..', '..', 'protos');
// Photos straight off a phone run to 10+ MB; grpc-js would refuse replies over 4 MB.
// The server's default limit and the Python client's are the same 64 MB.
const MAX_MESSAGE_BYTES = 64 * 1024 * 1024;

// How messages look in JavaScript (see README.md):
const LOADER_OPTIONS = {
  includeDirs: [PROTO_ROOT],
  // Field names exactly as written in the .proto (search_seconds, vector_model), so
  // the proto file documents these objects, and --json output matches grpcurl's names.
  keepCase: true,
  // uint64 fields (ids, counts) as decimal strings: ids are caller-chosen up to 2^64-1,
  // and a JS number is exact only up to 2^53. Ids go in as strings (or small numbers).
  longs: String,
  // Unset scalars read as 0, '' or false instead of being missing; unset message
  // fields read as null.
  defaults: true,
  // Each oneof gets a virtual field naming the member that is set, e.g. AddResult's
  // `outcome` is 'id' or 'error' (an id of '0' is a real id, not "unset").
  oneofs: true,
  // bytes fields stay Node Buffers (proto-loader's default).
};

const packageDefinition = protoLoader.loadSync('facesearch/v1/facesearch.proto', LOADER_OPTIONS);
const { FaceSearch } = grpc.loadPackageDefinition(packageDefinition).facesearch.v1;

/** A failed call: `code` is the gRPC status name (e.g. 'INVALID_ARGUMENT'). */
class FaceSearchError extends Error {
  constructor(code, details) {
    super(`${code}: ${details}`);
    this.name = 'FaceSearchError';
    this.code = code;
    this.details = details;
  }

  static fromGrpc(error) {
    return new FaceSearchError(statusName(error.code), error.details || error.message);
  }
}

/** A gRPC status code's name: grpc-js reports codes as numbers (3 → 'INVALID_ARGUMENT'). */
function statusName(code) {
  return grpc.status[code] ?? 'UNKNOWN';
}

/** Float32 rows (arrays of numbers, all of one length) as little-endian bytes. */
function packRows(rows, dim) {
  const buffer = Buffer.alloc(rows.length * dim * 4);
  rows.forEach((row, r) => {
    if (row.length !== dim) {
      throw new RangeError(`row ${r} has ${row.length} values, the first row ${dim}`);
    }
    // writeFloatLE, not a Float32Array view: the wire format is little-endian
    // whatever the machine's byte order.
    row.forEach((value, j) => buffer.writeFloatLE(value, (r * dim + j) * 4));
  });
  return buffer;
}

/**
 * Connect to a facesearch server. Returns an object of async methods; close() it
 * when done. The connection is made lazily, on the first call.
 *
 *   address         HOST:PORT (default: $FSCLIENT_SERVER, else 127.0.0.1:50051)
 *   token           sent as `authorization: Bearer <token>` on every call
 *   tlsCa           PEM file of the CA that signed the server's certificate: TLS on
 *   tlsCert, tlsKey PEM files of this client's certificate and key, for mutual TLS
 *   timeoutSeconds  a deadline for each call (default: none)
 *
 * Without tlsCa, tlsCert or tlsKey the connection is plaintext.
 */
function connect(address, { token, tlsCa, tlsCert, tlsKey, timeoutSeconds } = {}) {
  const target = address || process.env.FSCLIENT_SERVER || DEFAULT_SERVER;
  if (Boolean(tlsCert) !== Boolean(tlsKey)) {
    throw new TypeError('a TLS client certificate and its key go together');
  }
  const read = (file) => (file ? fs.readFileSync(file) : null);
  const credentials =
    tlsCa || tlsCert
      ? // A null CA trusts the system's roots (a server certificate from a public CA).
        grpc.credentials.createSsl(read(tlsCa), read(tlsKey), read(tlsCert))
      : grpc.credentials.createInsecure();
  const stub = new FaceSearch(target, credentials, {
    'grpc.max_send_message_length': MAX_MESSAGE_BYTES,
    'grpc.max_receive_message_length': MAX_MESSAGE_BYTES,
  });

  // Per-call metadata rather than call credentials: grpc-js refuses to attach call
  // credentials to an insecure channel, and the token works the same either way
  // (without TLS it travels in clear text, so use both outside a trusted network).
  function metadata() {
    const md = new grpc.Metadata();
    if (token) md.set('authorization', `Bearer ${token.trim()}`);
    return md;
  }

  function callOptions() {
    return timeoutSeconds ? { deadline: Date.now() + timeoutSeconds * 1000 } : {};
  }

  function unary(method, request) {
    return new Promise((resolve, reject) => {
      stub[method](request, metadata(), callOptions(), (error, response) =>
        error ? reject(FaceSearchError.fromGrpc(error)) : resolve(response),
      );
    });
  }

  function queryRequest({ k = 5, ef, exact = false, vectorModel = '' }) {
    // `ef` is a proto3 optional field: leave it out to use the server's default.
    return { k, exact, vector_model: vectorModel, ...(ef !== undefined && { ef }) };
  }

  // Add is a bidirectional stream: we send batches, the server answers each batch,
  // in order, once it is durably stored. Resolves to one AddResult per row.
  function addStream(requests, onBatch) {
    return new Promise((resolve, reject) => {
      const call = stub.Add(metadata(), callOptions());
      const results = [];
      call.on('data', (response) => {
        results.push(...response.results);
        onBatch?.(response.results);
      });
      // 'error' is a non-OK status for the whole stream (a bad item is not: it gets its
      // own AddResult.error). 'end' comes only after every reply has been read.
      call.on('error', (error) => reject(FaceSearchError.fromGrpc(error)));
      call.on('end', () => resolve(results));

      (async () => {
        for (const request of requests) {
          // write() returns false once gRPC's send buffer is full: wait for it to
          // drain rather than queue a whole bulk load in memory.
          if (!call.write(request)) await once(call, 'drain');
        }
        call.end();
      })().catch((error) => {
        call.cancel(); // e.g. a row that could not be packed: stop the stream here
        reject(error);
      });
    });
  }

  return {
    target,

    /**
     * Enroll raw vectors (arrays of numbers, one per row) with optional labels, ids and
     * metadata (each empty or one per row). They travel as packed float32 rows
     * (AddRequest.rows), `batchSize` rows per request. Resolves to one AddResult per row:
     * { outcome: 'id', id: '17' } or { outcome: 'error', error: { code, message } }.
     */
    async addVectors(
      vectors,
      { labels = [], ids = [], metadata = [], batchSize = 1000, vectorModel = '', onBatch } = {},
    ) {
      for (const [name, column] of Object.entries({ labels, ids, metadata })) {
        if (column.length && column.length !== vectors.length) {
          throw new RangeError(`${column.length} ${name} for ${vectors.length} vectors`);
        }
      }
      if (!vectors.length) return [];
      const dim = vectors[0].length;
      function* requests() {
        for (let start = 0; start < vectors.length; start += batchSize) {
          const end = start + batchSize;
          yield {
            vector_model: vectorModel,
            rows: {
              vectors: packRows(vectors.slice(start, end), dim),
              dim,
              labels: labels.slice(start, end),
              ids: ids.slice(start, end).map(String),
              metadata: metadata.slice(start, end),
            },
          };
        }
      }
      return addStream(requests(), onBatch);
    },

    /** The k nearest neighbours of a vector: a QueryResponse with one `results` entry. */
    queryVector(vector, options = {}) {
      return unary('Query', { ...queryRequest(options), vector: { values: vector } });
    },

    /** The k nearest neighbours of every face in an image (a Buffer or a file path). */
    async queryImage(image, options = {}) {
      const bytes = Buffer.isBuffer(image) ? image : await fs.promises.readFile(image);
      return unary('Query', { ...queryRequest(options), image: bytes });
    },

    /** The k nearest neighbours of an enrolled item, by its id. */
    queryId(id, options = {}) {
      return unary('Query', { ...queryRequest(options), id: String(id) });
    },

    /** What the index holds and the embedding contract it enforces. */
    stats() {
      return unary('Stats', {});
    },

    close() {
      stub.close();
    },
  };
}

module.exports = { connect, FaceSearchError, statusName, DEFAULT_SERVER, LOADER_OPTIONS };
