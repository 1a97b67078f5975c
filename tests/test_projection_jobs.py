"""Background map jobs (shared per key, progress reported) and the Projections page's
decision: show a cached map, wait for a job, compute a quick one now, or offer a job."""
from __future__ import annotations

import pytest

from core import projection_jobs as jobs
from core import projections as pj
from core.errors import LayerLabError

N = 1000


def test_background_job_reports_and_shares(mnist, tmp_path):
    req = pj.ProjectionRequest(method="pca", n_points=N, seed=7)
    job = jobs.submit(req, mnist.x_test, mnist.y_test, cache_dir=tmp_path)
    same = jobs.submit(req, mnist.x_test, mnist.y_test, cache_dir=tmp_path)
    assert same is job or same.result().from_cache     # joined, or already finished
    proj = job.result()
    assert job.done and job.fraction == 1.0 and proj.embedding.shape == (N, 2)
    later = jobs.submit(req, mnist.x_test, mnist.y_test, cache_dir=tmp_path)
    assert later is not job and later.result().from_cache
    fit = jobs.submit(pj.ProjectionRequest(method="umap", n_points=N), mnist.x_test,
                      mnist.y_test, kind="fit", cache_dir=tmp_path)
    fitted = fit.result()
    assert pj.fitted_map(fitted.key) is fitted
    bad = jobs.submit(pj.ProjectionRequest(method="pca", n_points=N, layer="dense1",
                                           model_id="x"), mnist.x_test, mnist.y_test,
                      cache_dir=tmp_path)
    with pytest.raises(LayerLabError, match="model"):
        bad.result()


def test_the_page_plan_follows_the_cache_and_the_sessions_job(mnist, tmp_path):
    x, y = mnist.x_test, mnist.y_test
    pca = pj.ProjectionRequest(method="pca", n_points=N, seed=11)
    request, _, key = pj.resolve(pca, x, y)
    assert jobs.plan_map(request, key, cache_dir=tmp_path).action == "compute"
    big = pj.ProjectionRequest(method="pca", n_points=jobs.QUICK_PCA_POINTS + 1,
                               split="train")
    assert jobs.plan_map(big, "some-key", cache_dir=tmp_path).action == "offer"
    tsne = pj.ProjectionRequest(method="tsne", n_points=N, seed=11)
    t_request, _, t_key = pj.resolve(tsne, x, y)
    other = jobs.ProjectionJob(key, "projection")         # the session's job, another map
    plan = jobs.plan_map(t_request, t_key, other, cache_dir=tmp_path)
    assert plan.action == "offer" and plan.job is other
    running = jobs.ProjectionJob(t_key, "projection")
    plan = jobs.plan_map(t_request, t_key, running, cache_dir=tmp_path)
    assert plan.action == "wait" and plan.job is running
    proj = pj.compute_projection(request, x, y, cache_dir=tmp_path)
    plan = jobs.plan_map(request, key, running, cache_dir=tmp_path)
    assert plan.action == "show" and plan.projection.from_cache
    assert (plan.projection.embedding == proj.embedding).all()
