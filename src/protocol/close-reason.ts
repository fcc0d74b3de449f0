/** A WebSocket close reason may hold at most 123 bytes of UTF-8; longer ones make `close` throw. */
export function closeReason(reason: string): string {
  const bytes = Buffer.from(reason, 'utf8');
  if (bytes.length <= 123) return reason;
  // Cut on a character boundary: decode a prefix and drop a possibly split last character.
  return (
    bytes
      .subarray(0, 120)
      .toString('utf8')
      .replace(/\uFFFD$/, '') + '...'
  );
}
