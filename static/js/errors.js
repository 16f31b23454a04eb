// The error every kpay call rejects with, built from the error envelope
// {"error": {"code", "message", ...details}} of a REST response or a socket reply.

/** A failed call: `code` and `message` from the error envelope, `status` the HTTP status
 * (0 for a network failure), `needed` for 402 insufficient_balance, `details` the rest. */
export class ApiError extends Error {
  constructor(status, code, message, details = {}) {
    super(message || code);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.details = details;
    this.needed = details.needed;
  }
}

/** Make an ApiError from a parsed error envelope (REST body or socket reply). */
export function errorFromEnvelope(status, body) {
  const error = body && typeof body === "object" && body.error;
  if (error && typeof error === "object") {
    const { code, message, ...details } = error;
    return new ApiError(status, code || "http_error", message || "", details);
  }
  return new ApiError(status, "http_error", `HTTP ${status}`);
}
