"""Write a small synthetic clip for the quickstart: python examples/make_sample.py sample.mp4

320x180, 25 fps, 4 s of a moving colour pattern with a 440 Hz tone (AAC). Upscale it with
`rlfn-video video sample.mp4 sample_x4.mp4`.
"""

import sys
from fractions import Fraction

import av
import numpy as np

WIDTH, HEIGHT, FPS, SECONDS, RATE = 320, 180, 25, 4, 48000


def picture(t: float) -> np.ndarray:
    """(H, W, 3) uint8: hue bands drifting right, a bright disc circling, fine detail to upscale."""
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    phase = 2 * np.pi * (x / WIDTH - t / SECONDS)
    rgb = np.stack([np.sin(phase), np.sin(phase + 2.1), np.sin(phase + 4.2)], axis=-1) * 0.4 + 0.5
    rgb *= 0.85 + 0.15 * (((x // 8 + y // 8) % 2)[..., None])  # checker texture: detail to recover
    cx, cy = WIDTH / 2 + 100 * np.cos(2 * np.pi * t / SECONDS), HEIGHT / 2 + 50 * np.sin(2 * np.pi * t / SECONDS)
    rgb[(x - cx) ** 2 + (y - cy) ** 2 < 20**2] = (1.0, 0.95, 0.8)
    return (rgb * 255).round().astype(np.uint8)


def main(path: str) -> None:
    with av.open(path, "w") as out:
        video = out.add_stream("libx264", rate=FPS, options={"crf": "18", "preset": "medium"})
        video.width, video.height, video.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        # Say which matrix the pixels use: untagged SD is read as BT.601 by most players.
        cc = video.codec_context
        cc.colorspace = cc.color_primaries = cc.color_trc = 1  # BT.709
        cc.color_range = 1  # limited ("MPEG")
        audio = out.add_stream("aac", rate=RATE, layout="stereo")

        for i in range(FPS * SECONDS):
            frame = av.VideoFrame.from_ndarray(picture(i / FPS), format="rgb24")
            # Convert with the matrix we tag; PyAV's implicit conversion would use BT.601.
            frame = frame.reformat(format="yuv420p", dst_colorspace="ITU709", dst_color_range="MPEG")
            frame.pts = i
            out.mux(video.encode(frame))
        out.mux(video.encode())  # flush: the encoder holds frames back for B-frames

        tone = 0.2 * np.sin(2 * np.pi * 440 * np.arange(RATE * SECONDS) / RATE).astype(np.float32)
        for start in range(0, len(tone), 1024):
            chunk = np.stack([tone[start:start + 1024]] * 2)  # planar stereo
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="stereo")
            frame.sample_rate, frame.pts, frame.time_base = RATE, start, Fraction(1, RATE)
            out.mux(audio.encode(frame))
        out.mux(audio.encode())


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__.splitlines()[0])
    main(sys.argv[1])
