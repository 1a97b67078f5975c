"""Layer Lab: navigation and the shared sidebar. Pages live in pages/, logic in core/."""
import streamlit as st

from pages.common import device_label, init_session, mnist
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
        st.Page("pages/challenge.py", title="Challenge", icon="🏆"),
    ],
    "Inspect": [st.Page("pages/draw.py", title="Draw & inspect", icon="✏️")],
    "Data": [st.Page("pages/data.py", title="Data", icon="🔢"),
             st.Page("pages/projections.py", title="Projections", icon="🗺️"),
             st.Page("pages/errors.py", title="Errors", icon="❌")],
}
nav = st.navigation(PAGES)

with st.sidebar:
    st.markdown("### 🔬 Layer Lab")
    try:
        st.caption(f"**Data:** {mnist().describe()}")
    except Exception as err:  # DataError: shown as its sentence
        st.error(str(err))
    st.caption(f"**Device:** {device_label()}")
    workspace_sidebar()

workspace_gate()        # a link's unknown workspace is asked about before any page runs
nav.run()
