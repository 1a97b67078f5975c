"""Background map jobs (shared per key, progress reported) and the Projections page's
decision: show a cached map, wait for a job, compute a quick one now, or offer a job."""
from __future__ import annotations

import pytest

from core import projection_jobs as jobs
from core import projections as pj
from core.errors import LayerLabError
from tests.waiting import wait_until

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



def test_one_job_per_workspace_and_a_fair_turn_for_another(mnist, tmp_path):
    """Six maps from workspace A, then one from B: A's first five are cancelled (the
    running one stopped mid-way, the queued ones never started), B runs right after A's
    newest instead of behind all six."""
    from core.workspace import new_workspace_id

    a, b = new_workspace_id(), new_workspace_id()
    x, y = mnist.x_test, mnist.y_test
    first = jobs.submit(pj.ProjectionRequest("tsne", n_points=N, seed=100), x, y,
                        cache_dir=tmp_path, workspace=a)
    wait_until(lambda: first.fraction > 0.12, 120)          # t-SNE running in the child process
    mine = [first] + [jobs.submit(pj.ProjectionRequest("tsne", n_points=N, seed=100 + i),
                                  x, y, cache_dir=tmp_path, workspace=a)
                      for i in range(1, 6)]
    theirs = jobs.submit(pj.ProjectionRequest("pca", n_points=N, seed=5), x, y,
                         cache_dir=tmp_path, workspace=b)
    assert theirs.result().embedding.shape == (N, 2)
    newest = mine[-1]
    assert newest.result().embedding.shape == (N, 2)
    for job in mine[:-1]:
        with pytest.raises(jobs.JobCancelled, match="replaced it"):
            job.result()
        assert job.cancelled and pj.load_projection(job.key, tmp_path) is None
    assert all(job.began is None for job in mine[1:-1])     # dropped before they started
    assert first.began < newest.began < theirs.began
    assert first.fraction < 1.0                             # stopped, not finished


def test_a_job_another_workspace_waits_for_is_not_cancelled(mnist, tmp_path):
    from core.workspace import new_workspace_id

    a, b, c = new_workspace_id(), new_workspace_id(), new_workspace_id()
    x, y = mnist.x_test, mnist.y_test
    blocker = jobs.submit(pj.ProjectionRequest("tsne", n_points=N, seed=200), x, y,
                          cache_dir=tmp_path, workspace=c)        # keeps the queue busy
    shared = pj.ProjectionRequest("pca", n_points=N, seed=201)
    job_a = jobs.submit(shared, x, y, cache_dir=tmp_path, workspace=a)
    job_b = jobs.submit(shared, x, y, cache_dir=tmp_path, workspace=b)
    assert job_b is job_a and job_a.owners == {a, b}
    other = jobs.submit(pj.ProjectionRequest("pca", n_points=N, seed=202), x, y,
                        cache_dir=tmp_path, workspace=a)           # A moves on
    assert not job_a.cancelled and job_a.owners == {b}
    assert job_a.result().embedding.shape == (N, 2)
    assert other.result().embedding.shape == (N, 2) and blocker.result() is not None
