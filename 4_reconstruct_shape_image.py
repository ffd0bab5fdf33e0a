"""Reconstruct colour shapes from VC.

Reproduces Figure 6A of Shen, Horikawa, Majima & Kamitani (2019), PLOS Comput Biol 15(1):
e1006633, from the published decoded features. Edit the constants below to change the
subjects, ROIs, images, layers or options; run ``python 4_reconstruct_shape_image.py --help`` for the
command-line overrides (quick checks, cluster runs).

Results: ./results/4_reconstruct_shape_image/<subject>/<roi>/recon_img-<label>.mat, recon_img_normalized-<label>.jpg
"""

from icnn_torch.run.reconstruct import main

# The paper's figure these constants reproduce: its number and title.
figure_title = 'Fig 6A. Artificial shape reconstructions'

# Where the weights and data are (downloaded there when missing), relative to this
# script's folder or absolute: a copy of this script in another folder points these at the
# project's folders.
data_dir = './data'
net_dir = './net'

# Decoded features: the published ones (figshare article 7033577), or a tree decoded
# from fMRI in the same layout (<dir>/<image_type>/<network>/<layer>/<subject>/<roi>/).
decoded_features_dir = data_dir + '/decodedfeatures'

# Subjects, ROIs and images of the figure (in the original's order).
subjects_list = ['S1', 'S2', 'S3']
rois_list = ['VC']
image_type = 'color_shape'
image_label_list = ['Img0001', 'Img0002', 'Img0003', 'Img0004', 'Img0005', 'Img0006', 'Img0007',
    'Img0008', 'Img0009', 'Img0010', 'Img0011', 'Img0012', 'Img0013', 'Img0014',
    'Img0015']
network = 'VGG19'
layers = ['conv1_1', 'conv1_2', 'conv2_1', 'conv2_2', 'conv3_1', 'conv3_2', 'conv3_3',
    'conv3_4', 'conv4_1', 'conv4_2', 'conv4_3', 'conv4_4', 'conv5_1', 'conv5_2',
    'conv5_3', 'conv5_4', 'fc6', 'fc7', 'fc8']  # all conv and fc layers

# Reconstruction algorithm: 'icnn_lbfgs' or 'icnn_gd' (pixels), 'icnn_dgn_gd' or
# 'icnn_dgn_lbfgs' (generator input); opts are its keyword options.
engine = 'icnn_lbfgs'

# Reconstruction: pixel L-BFGS-B (icnn_torch.icnn_lbfgs) from the mean-colour image.
maxiter = 200
opts = {
    'loss_type': 'l2',          # 'l2', 'l1', 'inner' or 'gram'
    'maxiter': maxiter,         # L-BFGS iterations
    'disp': None,               # None: progress bar on a terminal, 'iter=N; err=V;' lines otherwise
    'initial_image': 'mean',    # the flat image of the ImageNet mean colour
}

# Where results go, and how the script behaves.
results_dir = './results'
download = 'ask'      # missing data/weights: 'ask' (on a terminal), 'yes', or 'no' (stop)
overwrite = False     # True: redo reconstructions whose outputs already exist
# Snapshots (snapshots/image-<label>/) every N iterations for the GD engines, every N
# function evaluations for L-BFGS: 1 saves every one, as the original; a larger N,
# or 0 (none), saves disk.
snapshot_every = 1
device = None         # None: CUDA when present, else CPU; or 'cpu', 'cuda:1', ...


if __name__ == '__main__':
    main(globals())
