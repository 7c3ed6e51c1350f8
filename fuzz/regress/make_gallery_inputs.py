#!/usr/bin/env python3
"""Minimal gallery indexes (2 rows, 1-wide arrays) with one damaged header field each: the
regression inputs of fuzz_gallery (fuzz/regress/gallery/) for the fixes in src/index/gallery.cpp.

Usage: make_gallery_inputs.py fuzz/regress/gallery
"""
import json, struct, sys
M = (1 << 64) - 1
def checksum(b):
    h = 1469598103934665603
    n8 = len(b) // 8 * 8
    for i in range(0, n8, 8):
        h = ((h ^ struct.unpack('<Q', b[i:i+8])[0]) * 1099511628211) & M
    for c in b[n8:]:
        h = ((h ^ c) * 1099511628211) & M
    return '%016x' % h
def index(patch=lambda h: None, raw=None):
    emb = struct.pack('<2f', 0.5, -0.5); post = struct.pack('<2f', 1, 1); code = struct.pack('<2f', 0, 1)
    thumbs = b''
    blobs, off, body = [], 0, b''
    for name, b in (('emb', emb), ('post', post), ('code', code), ('thumbs', thumbs)):
        blobs.append({'name': name, 'offset': off, 'bytes': len(b), 'checksum': checksum(b)}); off += len(b); body += b
    h = {'format': 'duet-gallery-v1', 'duet_version': '0.1.0', 'model_hash': '0', 'model_dir': '/m', 'root': '/r',
         'domain': 'photo', 'index_type': 'exact', 'rows': 2,
         'entries': [['a.jpg', 1, 2, '00000000000000aa', 0, 0], ['b.jpg', 1, 2, '00000000000000bb', 0, 0]],
         'dims': {'emb': 1, 'post': 1, 'code': 1}, 'blobs': blobs}
    patch(h)
    s = (raw(json.dumps(h)) if raw else json.dumps(h)).encode()
    return b'DUETGAL1' + struct.pack('<Q', len(s)) + s + body
out = sys.argv[1]
def put(name, b): open(f'{out}/{name}', 'wb').write(b)
put('ok.idx', index())
put('hash-not-hex.idx', index(lambda h: h['entries'][0].__setitem__(3, 'zz')))
put('rows-float.idx', index(lambda h: h.__setitem__('rows', 1e300)))
put('offset-float.idx', index(lambda h: h['blobs'][1].__setitem__('offset', 8.0e300)))
put('rows-times-cols-overflow.idx', index(lambda h: (h.__setitem__('rows', 2**62), h['dims'].__setitem__('emb', 4))))
def shard(h):
    h['shard'] = {'index': 0, 'of': 2, 'offset': 2**63 - 1, 'total': 4}
    for name in ('shard_start', 'shard_col', 'shard_w'):
        h['blobs'].insert(-1, {'name': name, 'offset': 24, 'bytes': 0, 'checksum': checksum(b'')})
put('shard-offset-overflow.idx', index(shard))
