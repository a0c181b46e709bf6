/**
 * supertest's `.serialize()` for a body sent byte for byte whatever its Content-Type (superagent
 * would otherwise turn a Buffer labelled as a form into `0=..&1=..`); curl --data-binary sends
 * the file as it is. superagent types serializers as returning a string, but writes a Buffer
 * returned by one unchanged.
 */
export const asIs = (body: Buffer): string => body as unknown as string;
