// @parley/client: JavaScript client SDK for the Parley chat broker.
export {
  ParleyClient, ParleyError, ERROR_CODES, VERSION, randomId,
} from './client.js';
export {
  encode, decode, encodeClientFrame, decodeClientFrame, encodeServerFrame, decodeServerFrame,
  ProtoError, Role, Kind, ErrorCode, SCHEMA, CLIENT_BODIES, SERVER_BODIES,
  toBigInt, fromBigInt, metaToArray, metaToObject,
} from './proto.js';
export {
  frame, frameAll, splitFrames, FrameSplitter, FrameError, FRAME_HEADER_BYTES, DEFAULT_FRAME_BYTES_MAX,
  encodeClientMessage, decodeServerMessage, encodeServerMessage, decodeClientMessage,
} from './frame.js';
