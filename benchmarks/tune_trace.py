"""PSNR per outer iteration, mask statistics and the oracle on VALIDATION faces.

    MIMIC_TUNE_PRIOR=DIR python benchmarks/tune_trace.py TASK N "{overrides}" ["{overrides}" ...]
"""
import torch, sys, numpy as np, ast, time
sys.path.insert(0,'benchmarks')
from tune import val_faces
from mimic.engine import solve
from mimic.tasks import get_task
from mimic.priors import load_prior
from mimic.corruptions import get_corruption
from mimic.io import to_tensor, to_uint8
from mimic.metrics import psnr
torch.set_num_threads(2)
task=sys.argv[1]; n=int(sys.argv[2])  # validation faces (the first n of the val split)
p=load_prior(__import__('os').environ.get('MIMIC_TUNE_PRIOR','celeba64'))
cu=val_faces(n); c=to_tensor(cu)
corr=get_corruption(get_task(task).corruption)
y=corr(c,generator=torch.Generator().manual_seed(0))
y=to_tensor(to_uint8(y))[None]
km=corr.known_mask(c,y[0]) if hasattr(corr,'known_mask') else None
for v in sys.argv[3:]:
    ov=ast.literal_eval(v)
    cfg=get_task(task).config.replace(**ov)
    t0=time.time()
    ps=[]
    def cb(t,x,fx,h):
        ps.append(round(float(psnr(to_uint8(x[0]),cu).mean()),2))
    out=solve(p.G,p.D,y,cfg,callback=cb,generator=torch.Generator().manual_seed(0), method=ov.get('method','mimic') if False else 'mimic')
    msg=""
    if km is not None and hasattr(out.surrogate,'mask'):
        m=out.surrogate.mask[0].mean(0)
        kk=km[0,0]>0.5
        msg=f"mask in-keep {float(m[kk].mean()):.3f} in-destroyed {float(m[~kk].mean()):.3f}"
    print(v, "psnr/iter", ps, "obs", round(float(out.obs_loss.mean()),4), msg, f"{time.time()-t0:.0f}s", flush=True)
if km is not None:
    out=solve(p.G,p.D,y,get_task(task).config,method='pgd',weight=km[None])
    print("oracle(mask)", round(float(psnr(to_uint8(out.x[0]),cu).mean()),2))
if task in ('gray_blur','negative'):
    out=solve(p.G,p.D,y,get_task(task).config,method='pgd',operator=lambda x: corr(x))
    print("oracle(op)", round(float(psnr(to_uint8(out.x[0]),cu).mean()),2))
