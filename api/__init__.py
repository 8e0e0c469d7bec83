"""The edge: the Quart-Trio app, REST blueprints, auth and the wire schemas."""

from api._app import CannotListen as CannotListen
from api._app import create_app as create_app
from api._app import open_services as open_services
from api._app import serve as serve
from api._app import serve_asgi as serve_asgi
from api._auth import Passwords as Passwords
from api._auth import Tokens as Tokens
from api._config import ConfigError as ConfigError
from api._config import Settings as Settings
from api._config import load_settings as load_settings
from api._config import misspelt_variables as misspelt_variables
from api._gc import keep_collections_short as keep_collections_short
from api._seed import DEMO_CUSTOMERS as DEMO_CUSTOMERS
from api._seed import DEMO_PASSWORD as DEMO_PASSWORD
from api._seed import DEMO_STAFF as DEMO_STAFF
from api._seed import SeedReport as SeedReport
from api._seed import create_admin as create_admin
from api._seed import demo_logins as demo_logins
from api._seed import seed_demo_data as seed_demo_data
from api._services import Services as Services
from api._signin_throttle import unlock as unlock
