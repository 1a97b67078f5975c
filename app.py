"""Layer Lab: navigation and the shared sidebar. Pages live in pages/, logic in core/.

Every run goes through this file, a deep link on a freshly started server included
(pages/common.py explains how, since a folder named pages/ would otherwise bypass it)."""
import streamlit as st

from core import backend
from core.errors import LayerLabError
from pages.common import device_label, init_session, mnist, show_error
from pages.guards import keep_caches_from_viewers
from pages.workspace_ui import workspace_gate, workspace_sidebar

keep_caches_from_viewers()   # a viewer's "clear cache" must not empty everyone's caches

st.set_page_config(page_title="Layer Lab", page_icon="🔬", layout="wide")
init_session()

PAGES = {
    "Start": [st.Page("pages/home.py", title="Home", icon="🏠", default=True)],
    "Networks": [
        st.Page("pages/models.py", title="Models", icon="🧱"),
        st.Page("pages/builder.py", title="Builder", icon="🧩"),
        st.Page("pages/train.py", title="Train", icon="🏋️"),
        st.Page("pages/compare.py", title="Compare", icon="⚖️"),
        st.Page("pages/sweep.py", title="Sweep", icon="🔭"),
        st.Page("pages/challenge.py", title="Challenge", icon="🏆"),
        st.Page("pages/cost.py", title="Real cost", icon="💾"),
    ],
    "Inspect": [st.Page("pages/draw.py", title="Draw & inspect", icon="✏️"),
                st.Page("pages/my_digits.py", title="My digits", icon="🖐️")],
    "Data": [st.Page("pages/data.py", title="Data", icon="🔢"),
             st.Page("pages/projections.py", title="Projections", icon="🗺️"),
             st.Page("pages/errors.py", title="Errors", icon="❌")],
}
nav = st.navigation(PAGES, expanded=True)    # 13 pages: none hidden behind "View more"

with st.sidebar:
    st.markdown("### 🔬 Layer Lab")
    try:
        st.caption(f"**Data:** {mnist().describe()}")   # the kind of source, no path
    except LayerLabError as err:        # a DataError: MNIST is missing or unreadable
        show_error(err)
    st.caption(f"**Device:** {device_label()}")
    training = backend.current().describe()    # a cached view: never waits on a cluster
    st.caption(f"**Training:** {training.summary}")
    if training.problems:
        st.caption(" ".join(training.problems))
    workspace_sidebar()

workspace_gate()        # a link's unknown workspace is asked about before any page runs
nav.run()
