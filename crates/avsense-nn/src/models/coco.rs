//! The 80 COCO object classes in the order the COCO-80 detectors (NanoDet, CenterNet) output.

/// COCO-80 class names, index = class id.
pub const COCO80: [&str; 80] = [
    "person",
    "bicycle",
    "car",
    "motorcycle",
    "airplane",
    "bus",
    "train",
    "truck",
    "boat",
    "traffic light",
    "fire hydrant",
    "stop sign",
    "parking meter",
    "bench",
    "bird",
    "cat",
    "dog",
    "horse",
    "sheep",
    "cow",
    "elephant",
    "bear",
    "zebra",
    "giraffe",
    "backpack",
    "umbrella",
    "handbag",
    "tie",
    "suitcase",
    "frisbee",
    "skis",
    "snowboard",
    "sports ball",
    "kite",
    "baseball bat",
    "baseball glove",
    "skateboard",
    "surfboard",
    "tennis racket",
    "bottle",
    "wine glass",
    "cup",
    "fork",
    "knife",
    "spoon",
    "bowl",
    "banana",
    "apple",
    "sandwich",
    "orange",
    "broccoli",
    "carrot",
    "hot dog",
    "pizza",
    "donut",
    "cake",
    "chair",
    "couch",
    "potted plant",
    "bed",
    "dining table",
    "toilet",
    "tv",
    "laptop",
    "mouse",
    "remote",
    "keyboard",
    "cell phone",
    "microwave",
    "oven",
    "toaster",
    "sink",
    "refrigerator",
    "book",
    "clock",
    "vase",
    "scissors",
    "teddy bear",
    "hair drier",
    "toothbrush",
];

/// The name of class `id`, or `"class_<id>"` for an id outside COCO-80.
pub fn name(id: usize) -> String {
    COCO80
        .get(id)
        .map(|s| s.to_string())
        .unwrap_or_else(|| format!("class_{id}"))
}

/// The id of a class name.
pub fn id(name: &str) -> Option<usize> {
    COCO80.iter().position(|n| *n == name)
}

#[cfg(test)]
mod tests {
    #[test]
    fn known_ids() {
        assert_eq!(super::COCO80[0], "person");
        assert_eq!(super::id("car"), Some(2));
        assert_eq!(super::id("bottle"), Some(39));
        assert_eq!(super::id("cell phone"), Some(67));
        assert_eq!(super::name(79), "toothbrush");
        assert_eq!(super::name(80), "class_80");
    }
}
