// Admission warnings reach the user as HTTP "Warning: 299" headers (kubectl and Helm print them). The API
// server truncates long ones and drops them past 4 KiB in total, so each stays under 120 characters, with
// a recognisable prefix, and in printable ASCII: a header is no place for control characters, and
// clients decode header bytes differently beyond ASCII.

export const WARNING_PREFIX = 'config-checksum: ';
export const MAX_WARNING_LENGTH = 119;

export function warning(text: string): string {
  const printable = `${WARNING_PREFIX}${text}`.replace(/[^\x20-\x7e]/g, '?');
  return printable.length <= MAX_WARNING_LENGTH ? printable : `${printable.slice(0, MAX_WARNING_LENGTH - 3)}...`;
}
