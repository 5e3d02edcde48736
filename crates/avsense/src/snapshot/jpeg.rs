//! RGB → JPEG with GStreamer's `jpegenc` (through `gst_video::convert_sample`, which runs
//! `appsrc ! videoconvert ! jpegenc ! appsink` for one image).

use gstreamer as gst;
use gstreamer_video as gst_video;

/// Why a JPEG could not be made.
#[derive(Debug, thiserror::Error)]
pub enum JpegError {
    /// The pixels do not fill `width × height` RGB.
    #[error("{len} bytes of RGB for {width}×{height} (expected {expected})")]
    Size {
        /// Bytes given.
        len: usize,
        /// Width.
        width: u32,
        /// Height.
        height: u32,
        /// Bytes expected.
        expected: usize,
    },
    /// GStreamer could not describe the image.
    #[error("jpegenc: cannot describe a {width}×{height} RGB image")]
    Caps {
        /// Width.
        width: u32,
        /// Height.
        height: u32,
        /// GStreamer's error.
        source: gst::glib::BoolError,
    },
    /// The conversion pipeline failed (no `jpegenc`: gstreamer1.0-plugins-good).
    #[error("jpegenc (gstreamer1.0-plugins-good)")]
    Convert {
        /// GStreamer's error.
        source: gst::glib::Error,
    },
    /// It returned no buffer.
    #[error("jpegenc returned no image")]
    Empty,
}

/// Encodes tight RGB rows as a JPEG (jpegenc's default quality, 85).
pub fn encode_jpeg(rgb: &[u8], width: u32, height: u32) -> Result<Vec<u8>, JpegError> {
    let expected = width as usize * height as usize * 3;
    if rgb.len() != expected || width == 0 || height == 0 {
        return Err(JpegError::Size {
            len: rgb.len(),
            width,
            height,
            expected,
        });
    }
    let caps_err = |source| JpegError::Caps {
        width,
        height,
        source,
    };
    gst::init().map_err(|source| JpegError::Convert { source })?;
    let info = gst_video::VideoInfo::builder(gst_video::VideoFormat::Rgb, width, height)
        .build()
        .map_err(caps_err)?;
    // GStreamer's RGB rows start on 4-byte boundaries: pad each row to its stride.
    let stride = info.stride()[0] as usize;
    let row = width as usize * 3;
    let data = if stride == row {
        rgb.to_vec()
    } else {
        let mut v = vec![0u8; stride * height as usize];
        for (dst, src) in v.chunks_exact_mut(stride).zip(rgb.chunks_exact(row)) {
            dst[..row].copy_from_slice(src);
        }
        v
    };
    let caps = info.to_caps().map_err(caps_err)?;
    let sample = gst::Sample::builder()
        .buffer(&gst::Buffer::from_mut_slice(data))
        .caps(&caps)
        .build();
    let jpeg_caps = gst::Caps::builder("image/jpeg").build();
    let out = gst_video::convert_sample(&sample, &jpeg_caps, Some(gst::ClockTime::from_seconds(5)))
        .map_err(|source| JpegError::Convert { source })?;
    let buf = out.buffer().ok_or(JpegError::Empty)?;
    let map = buf.map_readable().map_err(|_| JpegError::Empty)?;
    Ok(map.as_slice().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_a_decodable_jpeg_of_odd_width() {
        let (w, h) = (33u32, 17u32);
        let rgb: Vec<u8> = (0..w * h)
            .flat_map(|i| [(i % 256) as u8, 128, 40])
            .collect();
        let jpeg = encode_jpeg(&rgb, w, h).unwrap();
        assert_eq!(&jpeg[..2], &[0xFF, 0xD8]);
        let mut d = jpeg_decoder::Decoder::new(&jpeg[..]);
        let px = d.decode().unwrap();
        let info = d.info().unwrap();
        assert_eq!((info.width, info.height, px.len()), (33, 17, 33 * 17 * 3));
        assert!((px[1] as i32 - 128).abs() < 12, "{}", px[1]);
    }

    #[test]
    fn a_wrong_size_is_an_error() {
        let e = encode_jpeg(&[0u8; 10], 4, 4).unwrap_err().to_string();
        assert!(e.contains("10 bytes") && e.contains("48"), "{e}");
    }
}
