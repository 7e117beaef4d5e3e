"""sensor_msgs/Image and CompressedImage <-> NumPy (avatar_forcing_ros.conversions)."""
import sys

import cv2
import numpy as np
import pytest
from sensor_msgs.msg import CompressedImage, Image

from avatar_forcing_ros import conversions as conv
from avatar_forcing_ros.conversions import MalformedMessageError

RNG = np.random.default_rng(7)
COLOUR = ('rgb8', 'bgr8', 'rgba8', 'bgra8')


def random_array(encoding: str, height: int = 5, width: int = 7) -> np.ndarray:
    channels, dtype = conv.ENCODINGS[encoding]
    shape = (height, width) if channels == 1 else (height, width, channels)
    return RNG.integers(0, np.iinfo(dtype).max + 1, size=shape, dtype=dtype)


def padded_message(arr: np.ndarray, encoding: str, pad: int, bigendian: bool = False) -> Image:
    """A message built by hand (not by the module under test) with ``pad`` bytes per row."""
    raw = arr.reshape(arr.shape[0], arr.shape[1], -1)
    raw = raw.astype(raw.dtype.newbyteorder('>' if bigendian else '<'))
    rows = raw.view(np.uint8).reshape(arr.shape[0], -1)
    padding = np.full((arr.shape[0], pad), 0xAB, np.uint8)
    msg = Image(height=arr.shape[0], width=arr.shape[1], encoding=encoding,
                is_bigendian=int(bigendian), step=rows.shape[1] + pad)
    msg.data = np.hstack([rows, padding]).tobytes()
    return msg


@pytest.mark.parametrize('encoding', ['rgb8', 'bgr8', 'rgba8', 'bgra8', 'mono8', 'mono16'])
@pytest.mark.parametrize('width', [7, 8])
def test_round_trip_native_layout(encoding, width):
    arr = random_array(encoding, width=width)
    msg = conv.array_to_image(arr, encoding, stamp=12.5, frame_id='cam')
    assert msg.step == width * arr.itemsize * (arr.shape[2] if arr.ndim == 3 else 1)
    assert msg.header.frame_id == 'cam' and msg.header.stamp.sec == 12
    assert msg.header.stamp.nanosec == 500_000_000
    back = conv.image_to_array(msg, want=None)
    assert back.dtype == arr.dtype and np.array_equal(back, arr)


def test_decoded_array_does_not_alias_the_message():
    arr = random_array('rgb8')
    msg = conv.array_to_image(arr, 'rgb8')
    for want in (None, 'rgb8'):
        decoded = conv.image_to_array(msg, want=want)
        decoded[...] = 0
        assert bytes(msg.data) == arr.tobytes()


@pytest.mark.parametrize('encoding', ['rgb8', 'bgr8', 'rgba8', 'bgra8', 'mono8', 'mono16'])
@pytest.mark.parametrize('pad', [1, 3])
def test_padded_step_odd_width(encoding, pad):
    arr = random_array(encoding, height=4, width=5)
    msg = padded_message(arr, encoding, pad)
    assert np.array_equal(conv.image_to_array(msg, want=None), arr)


def test_mono16_bigendian():
    arr = random_array('mono16', height=3, width=5)
    for big in (False, True):
        msg = padded_message(arr, 'mono16', pad=2, bigendian=big)
        back = conv.image_to_array(msg, want=None)
        assert back.dtype.byteorder in ('=', '|') or back.dtype.byteorder == {
            'little': '<', 'big': '>'}[sys.byteorder]
        assert np.array_equal(back, arr)
    assert np.array_equal(conv.image_to_array(msg, want='rgb8')[..., 0], (arr >> 8).astype(np.uint8))


@pytest.mark.parametrize('encoding', COLOUR + ('mono8',))
def test_want_rgb_and_bgr(encoding):
    rgb = random_array('rgb8')
    source = {'rgb8': rgb, 'bgr8': rgb[..., ::-1],
              'rgba8': np.dstack([rgb, np.full(rgb.shape[:2], 9, np.uint8)]),
              'bgra8': np.dstack([rgb[..., ::-1], np.full(rgb.shape[:2], 9, np.uint8)]),
              'mono8': rgb[..., 0]}[encoding]
    expected = rgb if encoding != 'mono8' else np.repeat(rgb[..., :1], 3, axis=2)
    msg = conv.array_to_image(np.ascontiguousarray(source), encoding)
    assert np.array_equal(conv.image_to_array(msg, want='rgb8'), expected)
    assert np.array_equal(conv.image_to_array(msg, want='bgr8'), expected[..., ::-1])


def yuy2_reference(packed: np.ndarray) -> np.ndarray:
    """BT.601 YUV422 -> RGB written out by hand (video range, as OpenCV's YUY2 conversion)."""
    y = packed[..., 0].astype(np.float64)
    u = np.repeat(packed[:, 0::2, 1], 2, axis=1).astype(np.float64) - 128
    v = np.repeat(packed[:, 1::2, 1], 2, axis=1).astype(np.float64) - 128
    c = 1.164 * (y - 16)
    rgb = np.stack([c + 1.596 * v, c - 0.391 * u - 0.813 * v, c + 2.018 * u], axis=-1)
    return np.clip(np.round(rgb), 0, 255)


def test_yuy2_read_matches_hand_conversion_with_padding():
    packed = RNG.integers(16, 236, size=(4, 6, 2), dtype=np.uint8)
    msg = padded_message(packed, 'yuv422_yuy2', pad=4)
    rgb = conv.image_to_array(msg, want='rgb8')
    assert rgb.shape == (4, 6, 3)
    assert np.abs(rgb.astype(np.float64) - yuy2_reference(packed)).max() <= 2
    assert np.array_equal(conv.image_to_array(msg, want=None), rgb)
    assert np.array_equal(conv.image_to_array(msg, want='bgr8'), rgb[..., ::-1])


def test_yuy2_write_round_trip():
    smooth = cv2.resize(random_array('rgb8', 4, 4), (16, 8), interpolation=cv2.INTER_NEAREST)
    msg = conv.array_to_image(smooth, 'yuv422_yuy2')
    assert msg.step == 16 * 2 and len(msg.data) == 8 * 32
    back = conv.image_to_array(msg)
    assert np.abs(back.astype(int) - smooth.astype(int)).max() <= 4  # YUV rounding only
    packed = conv.image_to_array(padded_message(np.zeros((2, 4, 2), np.uint8), 'yuv422_yuy2', 0),
                                 want=None)
    assert packed.shape == (2, 4, 3)
    with pytest.raises(ValueError, match='even width'):
        conv.array_to_image(random_array('rgb8', 2, 3), 'yuv422_yuy2')


@pytest.mark.parametrize('arr, match', [
    (np.zeros((2, 3, 2), np.uint8), 'even width'),           # packed: image_to_array refuses it
    (np.full((2, 4, 3), 0.9), 'dtype uint8'),                # would have been cast to 0
    (np.full((2, 4, 3), 300, np.uint16), 'dtype uint8'),     # would have wrapped to 44
])
def test_yuy2_write_refuses_what_it_cannot_encode_exactly(arr, match):
    with pytest.raises(ValueError, match=match):
        conv.array_to_image(arr, 'yuv422_yuy2')


def malformed(**fields) -> Image:
    msg = Image(height=2, width=3, encoding='rgb8', step=9)
    msg.data = bytes(18)
    for name, value in fields.items():
        setattr(msg, name, value)
    return msg


@pytest.mark.parametrize('fields, field_name', [
    ({'data': bytes(17)}, 'data'),
    ({'encoding': '32FC1'}, 'encoding'),
    ({'encoding': ''}, 'encoding'),
    ({'width': 0, 'step': 0}, 'width'),
    ({'height': 0}, 'height'),
    ({'step': 8}, 'step'),
    ({'encoding': 'mono16', 'step': 5, 'data': bytes(10)}, 'step'),
    ({'encoding': 'yuv422_yuy2', 'step': 6, 'data': bytes(12)}, 'width'),
])
def test_malformed_image_names_the_field(fields, field_name):
    with pytest.raises(MalformedMessageError, match=field_name):
        conv.image_to_array(malformed(**fields))


def test_bad_arrays_rejected_on_write():
    with pytest.raises(ValueError, match='encoding'):
        conv.array_to_image(random_array('rgb8'), 'rgb16')
    with pytest.raises(ValueError, match='shape'):
        conv.array_to_image(random_array('rgb8'), 'mono8')
    with pytest.raises(ValueError, match='dtype'):
        conv.array_to_image(random_array('mono8'), 'mono16')


@pytest.mark.parametrize('encoding', COLOUR + ('mono8', 'mono16'))
def test_png_round_trip_exact(encoding):
    arr = random_array(encoding, 6, 9)
    msg = conv.array_to_compressed(arr, encoding, fmt='png', stamp=3, frame_id='f')
    target = {'rgba8': 'bgra8', 'bgra8': 'bgra8', 'mono8': 'mono8', 'mono16': 'mono16'}.get(
        encoding, 'bgr8')
    assert msg.format == f'{encoding}; png compressed {target}'
    assert msg.header.stamp.nanosec == 3 and msg.header.frame_id == 'f'
    back = conv.compressed_to_array(msg, want=None)
    assert back.dtype == arr.dtype and np.array_equal(back, arr)


@pytest.mark.parametrize('encoding', ['rgb8', 'bgr8', 'mono8'])
def test_jpeg_round_trip_close(encoding):
    smooth = cv2.GaussianBlur(random_array('rgb8', 32, 33), (0, 0), 4)
    arr = {'rgb8': smooth, 'bgr8': smooth[..., ::-1], 'mono8': smooth[..., 1]}[encoding]
    msg = conv.array_to_compressed(np.ascontiguousarray(arr), encoding, fmt='jpeg', quality=95)
    assert msg.format == f'{encoding}; jpeg compressed {"mono8" if encoding == "mono8" else "bgr8"}'
    back = conv.compressed_to_array(msg, want=None)
    assert back.shape == arr.shape
    assert np.abs(back.astype(int) - arr.astype(int)).mean() < 3


def test_compressed_from_plain_format_and_want():
    rgb = random_array('rgb8', 4, 5)
    ok, png = cv2.imencode('.png', rgb[..., ::-1])
    msg = CompressedImage(format='png')
    msg.data = png.tobytes()
    assert np.array_equal(conv.compressed_to_array(msg), rgb)
    assert np.array_equal(conv.compressed_to_array(msg, want='bgr8'), rgb[..., ::-1])


@pytest.mark.parametrize('channels, encoding', [(3, 'bgr8'), (4, 'bgra8')])
def test_16_bit_colour_png_keeps_the_high_byte_like_mono16(channels, encoding):
    wide = RNG.integers(0, 65536, size=(4, 5, channels), dtype=np.uint16)  # BGR(A), as OpenCV
    high = (wide >> 8).astype(np.uint8)
    msg = CompressedImage(format='png')
    msg.data = cv2.imencode('.png', wide)[1].tobytes()
    assert np.array_equal(conv.compressed_to_array(msg, want='bgr8'), high[..., :3])
    assert np.array_equal(conv.compressed_to_array(msg, want='rgb8'), high[..., 2::-1])
    assert np.array_equal(conv.compressed_to_array(msg, want=None), high)  # as decoded
    mono = CompressedImage(format='mono16; png compressed mono16')
    mono.data = cv2.imencode('.png', wide[..., 0])[1].tobytes()
    assert np.array_equal(conv.compressed_to_array(mono, want='bgr8')[..., 0], high[..., 0])


def test_compressed_float_pixels_are_refused():
    msg = CompressedImage(format='png')  # the format string lies; the data is a float TIFF
    msg.data = cv2.imencode('.tiff', np.full((2, 3, 3), 0.5, np.float32))[1].tobytes()
    with pytest.raises(MalformedMessageError, match='CompressedImage.data .*float32'):
        conv.compressed_to_array(msg)


@pytest.mark.parametrize('fmt, data, field_name', [
    ('rgb8; tiff compressed bgr8', b'xx', 'format'),
    ('rgb8; png compressed bgr8', b'', 'data'),
    ('rgb8; png compressed bgr8', b'not a png', 'data'),
])
def test_malformed_compressed(fmt, data, field_name):
    msg = CompressedImage(format=fmt)
    msg.data = data
    with pytest.raises(MalformedMessageError, match=field_name):
        conv.compressed_to_array(msg)


def test_cv_bridge_and_numpy_paths_agree():
    bridge = conv._cv_bridge()
    if bridge is None:
        pytest.skip('ROS 2 cv_bridge is not importable here (not on PyPI); the NumPy path is used')
    for encoding in conv.ENCODINGS:
        channels, dtype = conv.ENCODINGS[encoding]
        arr = random_array(encoding if encoding != 'yuv422_yuy2' else 'rgba8', 3, 6)
        arr = arr[..., :2] if encoding == 'yuv422_yuy2' else arr
        msg = padded_message(np.ascontiguousarray(arr), encoding, pad=2 if channels == 1 else 0)
        via_numpy = conv._decode_raw_numpy(msg, channels, dtype)
        assert np.array_equal(conv._decode_raw(msg, channels, dtype), via_numpy)
        written = conv.array_to_image(np.ascontiguousarray(arr), encoding)
        assert bytes(written.data) == np.ascontiguousarray(via_numpy).tobytes()
