"""The weight files ``--weights`` accepts, in one help text for the command-line tools."""

WEIGHTS_HELP = (
    "initial weights, any of: a detectlab .keras checkpoint or by-name .h5; "
    "Darknet .weights (yolov3.weights, yolov3-tiny.weights, backbone-only darknet53.conv.74; "
    "Darknet's batch norm reproduced exactly); keras-yolo3 .h5 (convert.py's yolo.h5 or train.py's "
    "trained_weights_*.h5, loaded by layer order); keras-frcnn model_frcnn.hdf5 (VGG16 / ResNet-50) and "
    "matterport mask_rcnn_*.h5 (by layer name); Keras application files (vgg16/resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5). "
    "Darknet and keras-yolo3 files of another class count load all but the output convolutions; "
    "for by-name files use --exclude. ImageNet backbones also via --set model.backbone_weights=imagenet"
)
