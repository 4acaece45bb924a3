"""The one stdlib reader of an F32 model.safetensors that the reference scripts share: {name: (shape, flat values)}."""
import json, struct

def read(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack_from("<Q", data, 0)
    header = json.loads(data[8:8 + n])
    base, tensors = 8 + n, {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        assert info["dtype"] == "F32", info["dtype"]
        b, e = info["data_offsets"]
        tensors[name] = (info["shape"], list(struct.unpack_from("<%df" % ((e - b) // 4), data, base + b)))
    return tensors
