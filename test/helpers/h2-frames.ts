// Raw HTTP/2 frames (RFC 9113), for clients node:http2 will not be: one that never reads, one that resets every
// stream it opens (rapid reset).

/** The client connection preface. */
export const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n')

const TYPE = { HEADERS: 0x1, RST_STREAM: 0x3, SETTINGS: 0x4 }
const FLAGS = { END_STREAM: 0x1, END_HEADERS: 0x4 }
/** RST_STREAM's CANCEL error code. */
export const CANCEL = 0x8

export function frame (type: number, flags: number, streamId: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const header = Buffer.alloc(9)
  header.writeUIntBE(payload.length, 0, 3)
  header[3] = type
  header[4] = flags
  header.writeUInt32BE(streamId & 0x7fffffff, 5)
  return Buffer.concat([header, payload])
}

/** An empty SETTINGS frame: the defaults. */
export function settingsFrame (): Buffer {
  return frame(TYPE.SETTINGS, 0, 0)
}

/** A GET of `path` as one HEADERS frame (HPACK: static-table entries and literals, no Huffman, no indexing). */
export function headersFrame (streamId: number, path: string, authority = 'localhost'): Buffer {
  const block = Buffer.concat([
    Buffer.from([0x82, 0x87]), // :method GET, :scheme https
    literal(4, path), // :path
    literal(1, authority) // :authority
  ])
  return frame(TYPE.HEADERS, FLAGS.END_STREAM | FLAGS.END_HEADERS, streamId, block)
}

export function rstStreamFrame (streamId: number, code = CANCEL): Buffer {
  const payload = Buffer.alloc(4)
  payload.writeUInt32BE(code)
  return frame(TYPE.RST_STREAM, 0, streamId, payload)
}

/** A literal header field without indexing, its name from the static table at `nameIndex` (under 15). */
function literal (nameIndex: number, value: string): Buffer {
  const bytes = Buffer.from(value)
  if (bytes.length >= 127) throw new Error('header value too long for this encoder')
  return Buffer.concat([Buffer.from([nameIndex, bytes.length]), bytes])
}
