// Money helpers for the pages. Amounts are integer fen (1 yuan = 100 fen), as in the API.
// Every step is integer or string arithmetic: a float never touches an amount.

const YUAN_PATTERN = /^(\d{1,9})(?:\.(\d{1,2}))?$/;

/** Group the digits of a non-negative integer string by thousands: "1234567" -> "1,234,567". */
function groupThousands(digits) {
  let out = "";
  for (let i = 0; i < digits.length; i += 1) {
    if (i > 0 && (digits.length - i) % 3 === 0) out += ",";
    out += digits[i];
  }
  return out;
}

/**
 * Format fen as yuan for people: 1234 -> "¥12.34", -5 -> "-¥0.05", 123456789 -> "¥1,234,567.89".
 * Options: {sign: true} puts "+" before positive amounts (ledger lines).
 */
export function formatFen(fen, { sign = false } = {}) {
  if (!Number.isSafeInteger(fen)) throw new TypeError(`amount must be integer fen, got ${fen}`);
  const negative = fen < 0;
  const magnitude = negative ? -fen : fen;
  const yuan = Math.floor(magnitude / 100); // exact: integer division of a safe integer
  const cents = magnitude - yuan * 100;
  const prefix = negative ? "-" : sign && fen > 0 ? "+" : "";
  return `${prefix}¥${groupThousands(String(yuan))}.${String(cents).padStart(2, "0")}`;
}

/**
 * Parse what a person typed as yuan ("12", "12.3", "12.34", " ¥12.34 ") into fen, by
 * string splitting. Returns null for anything else (negative, more than 2 decimals, text).
 */
export function parseYuan(text) {
  const cleaned = String(text ?? "").trim().replace(/^¥/, "").replace(/,/g, "");
  const match = YUAN_PATTERN.exec(cleaned);
  if (!match) return null;
  const yuan = Number(match[1]);
  const cents = Number((match[2] ?? "").padEnd(2, "0"));
  return yuan * 100 + cents;
}
