"""Reconstruct natural images from VC with the deep generator network (DGN).

Reproduces Figure 2 of Shen, Horikawa, Majima & Kamitani (2019), PLOS Comput Biol 15(1):
e1006633, from the published decoded features. Edit the constants below to change the
subjects, ROIs, images, layers or options; run ``python 1_reconstruct_natural_image.py --help`` for the
command-line overrides (quick checks, cluster runs).

Results: ./results/1_reconstruct_natural_image/<subject>/<roi>/recon_img-<label>.mat, recon_img_normalized-<label>.jpg
"""

from icnn_torch.run.reconstruct import main

# The paper's figure these constants reproduce: its number and title.
figure_title = 'Fig 2. Seen natural image reconstructions'

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
image_type = 'natural'
image_label_list = ['Img0009', 'Img0002', 'Img0001', 'Img0005', 'Img0036', 'Img0045', 'Img0031',
    'Img0043']
network = 'VGG19'
layers = ['conv1_1', 'conv1_2', 'conv2_1', 'conv2_2', 'conv3_1', 'conv3_2', 'conv3_3',
    'conv3_4', 'conv4_1', 'conv4_2', 'conv4_3', 'conv4_4', 'conv5_1', 'conv5_2',
    'conv5_3', 'conv5_4', 'fc6', 'fc7', 'fc8']  # all conv and fc layers

# Reconstruction algorithm: 'icnn_lbfgs' or 'icnn_gd' (pixels), 'icnn_dgn_gd' or
# 'icnn_dgn_lbfgs' (generator input); opts are its keyword options.
engine = 'icnn_dgn_gd'

# Reconstruction: gradient descent on the DGN input (icnn_torch.icnn_dgn_gd).
iter_n = 200
opts = {
    'loss_type': 'l2',               # 'l2', 'l1', 'inner' or 'gram'
    'iter_n': iter_n,                # iterations
    'disp_every': None,              # None: progress bar on a terminal, 'iter=N; err=V;' lines otherwise
    'lr_start': 2., 'lr_end': 1e-10,  # learning rate, linear schedule
    'momentum_start': 0.9, 'momentum_end': 0.9,
    'decay_start': 0.01, 'decay_end': 0.01,  # decay of the generator input after each step
    'feat_lower_bound': 0.,          # generator input bounds: 0 ...
    'feat_upper_bound': 'fc7_3x',    # ... data/act_range/3x/fc7.txt (3 SD of fc7)
    'initial_gen_feat': 'zeros',     # start from the zero vector
    'input_layer_gen': 'feat',       # the generator's input and output blobs, as the
    'output_layer_gen': 'generated', # original names them (the module's own here)
}

# Where results go, and how the script behaves.
results_dir = './results'
download = 'ask'      # missing data/weights: 'ask' (on a terminal), 'yes', or 'no' (stop)
overwrite = False     # True: redo reconstructions whose outputs already exist
# Snapshots (snapshots/image-<label>/) every N iterations for the GD engines, every N
# function evaluations for L-BFGS: 1 saves every one, as the original; a larger N,
# or 0 (none), saves disk.
snapshot_every = 1
batch_size = 1        # images optimised together (e.g. 24 on a GPU: all of figure 2 in one batch)
device = None         # None: CUDA when present, else CPU; or 'cpu', 'cuda:1', ...


if __name__ == '__main__':
    main(globals())
