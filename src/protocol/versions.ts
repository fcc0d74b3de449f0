/**
 * Version negotiation in the runner protocol's handshake. A runner offers in its hello the range
 * of versions it speaks; the gateway answers in its welcome with the highest version both speak,
 * or closes with UnsupportedVersion naming both ranges. A hello's `type` and its versions are
 * read before anything else in it, so that a runner of any version, older or newer, is told
 * that its version is the problem rather than which fields it got wrong.
 */
import { z } from 'zod';

export interface VersionRange {
  min: number;
  max: number;
}

export const versionRange = z
  .strictObject({ min: z.number().int().min(1), max: z.number().int().min(1) })
  .refine((r) => r.min <= r.max, 'min must not exceed max');

/** The highest version both ranges hold; null when they do not overlap. */
export function negotiateVersion(offered: VersionRange, supported: VersionRange): number | null {
  const highest = Math.min(offered.max, supported.max);
  return highest >= Math.max(offered.min, supported.min) ? highest : null;
}

export function speaksVersion(range: VersionRange, version: number): boolean {
  return version >= range.min && version <= range.max;
}

export function formatVersions({ min, max }: VersionRange): string {
  return min === max ? `${min}` : `${min} to ${max}`;
}

/** Read leniently (other fields are the version's business). Version 1 hellos named one version. */
const offeredVersions = z.union([
  z
    .object({ type: z.literal('hello'), protocolVersions: versionRange })
    .transform((h): VersionRange => h.protocolVersions),
  z
    .object({ type: z.literal('hello'), protocolVersion: z.number().int() })
    .transform((h): VersionRange => ({ min: h.protocolVersion, max: h.protocolVersion })),
]);

/** The versions a hello frame of any version offers; null when the frame is no hello. */
export function helloVersions(raw: string): VersionRange | null {
  let json: unknown;
  try {
    json = JSON.parse(raw);
  } catch {
    return null;
  }
  const result = offeredVersions.safeParse(json);
  return result.success ? result.data : null;
}
