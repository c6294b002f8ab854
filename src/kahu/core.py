"""The composition root: builds every part of one Kahu instance from its settings."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from kahu.audit import AuditLog
from kahu.auth.oidc import OidcLogin
from kahu.auth.projects import Projects
from kahu.auth.throttle import LoginThrottle
from kahu.auth.users import Accounts
from kahu.catalog.database import Database, make_engine, migrate
from kahu.catalog.dicom_query import DicomQuery
from kahu.catalog.ingest import Ingestor
from kahu.catalog.instance_metadata import MetadataIndex
from kahu.catalog.lineage import Lineage
from kahu.catalog.repository import Catalog
from kahu.dimse.handlers import DimseHandlers
from kahu.dimse.nodes import NodeRegistry
from kahu.dimse.server import DicomServer
from kahu.events import EventBus, IngestRate, SeriesCompletionMonitor
from kahu.federation.agent import Agent, AgentParts
from kahu.federation.coordinator import FedRuns
from kahu.federation.egress import Ledger
from kahu.federation.identity import Nonces, load_identity
from kahu.federation.peers import Peers
from kahu.federation.policy import Policies
from kahu.flow.engine import Engine
from kahu.flow.executors.base import Executor
from kahu.flow.registry import WorkflowRegistry
from kahu.flow.resources import Admission
from kahu.flow.runs import RunStore
from kahu.flow.services import Parts, ServiceFactory
from kahu.flow.triggers import Triggers, builtin_rule
from kahu.models.archive import Limits
from kahu.models.registry import ModelRegistry
from kahu.search.columns import ColumnIndex
from kahu.search.datasets import Curation
from kahu.settings import FlowSettings, Settings
from kahu.storage.cache import FileCache
from kahu.storage.filesystem import FilesystemBlobStore
from kahu.storage.objects import ObjectStore

log = logging.getLogger(__name__)


class Kahu:
    """One Kahu instance: catalog, blob store, ingest, accounts, DIMSE server."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        settings.home.mkdir(parents=True, exist_ok=True)
        engine = make_engine(settings.resolved_database_url)
        migrate(engine)
        self.db = Database(engine)
        self.catalog = Catalog(self.db)
        self.curation = Curation(self.catalog)
        self.search_index = ColumnIndex(self.catalog) if settings.search.column_index else None
        self.store = FilesystemBlobStore(settings.blob_root, fsync=settings.fsync)
        self.events = EventBus()
        self.ingestor = Ingestor(self.catalog, self.store, self.events)
        self.accounts = Accounts(self.db)
        self.audit = AuditLog(self.db)
        self.login_throttle = LoginThrottle()
        self.projects = Projects(self.db)
        self.nodes = NodeRegistry(self.db)
        self.oidc = OidcLogin(settings.oidc, self.accounts, self.projects)
        self.objects = ObjectStore(settings.resolved_objects_url)
        self.query = DicomQuery(self.db)
        self.metadata = MetadataIndex(self.db, self.store, self.events)
        self.ingest_rate = IngestRate(self.events)
        self.completion = SeriesCompletionMonitor(self.events, settings.dicom.series_quiet_seconds)
        handlers = DimseHandlers(
            settings.dicom,
            self.ingestor,
            self.catalog,
            self.query,
            self.nodes,
            self.store,
            self.projects,
            self.audit,
        )
        self.dicom = DicomServer(settings.dicom, handlers)
        self.lineage = Lineage(self.db)
        self.volumes = FileCache(
            settings.cache_root / "volumes", settings.http.volume_cache_mb * 1024**2
        )
        self.workflows = WorkflowRegistry(settings.workflows_folder)
        limits = settings.models
        self.models = ModelRegistry(
            self.db,
            settings.models_root,
            Limits(limits.max_bytes, limits.max_files, limits.max_compression_ratio),
        )
        self.runs = RunStore(self.db)
        flow = settings.flow
        self.flow = Engine(
            runs=self.runs,
            registry=self.workflows,
            executor=make_executor(flow, settings.home),
            admission=Admission(
                settings.home,
                cpus=flow.cpus,
                memory_mb_total=flow.memory_mb,
                min_free_disk_mb=flow.min_free_disk_mb,
                reserve_memory_mb=flow.reserve_memory_mb,
            ),
            runs_root=settings.runs_root,
            services=ServiceFactory(
                Parts(
                    catalog=self.catalog,
                    store=self.store,
                    ingestor=self.ingestor,
                    lineage=self.lineage,
                    objects=self.objects,
                    nodes=self.nodes,
                    audit=self.audit,
                    projects=self.projects,
                    accounts=self.accounts,
                    ae_title=settings.dicom.ae_title,
                    home=settings.home,
                    models=self.models,
                )
            ),
            poll_seconds=flow.poll_seconds,
            internal_workers=flow.internal_workers,
            models=self.models,
        )
        builtin = (
            [builtin_rule("builtin:thumbnails-on-arrival", "series-thumbnails")]
            if flow.thumbnails_on_arrival
            else []
        )
        self.triggers = Triggers(
            self.db,
            self.catalog,
            self.workflows,
            self.flow,
            self.events,
            self.projects,
            self.audit,
            builtin,
        )
        fed = settings.federation
        own_url = settings.http.public_url or f"http://{settings.http.host}:{settings.http.port}"
        self.identity = load_identity(settings.home, fed.site_name, own_url)
        self.peers = Peers(self.db)
        self.policies = Policies(self.db)
        self.ledger = Ledger(self.db)
        self.nonces = Nonces()
        self.fed_runs = FedRuns(
            self.db,
            self.peers,
            self.workflows,
            self.flow,
            self.objects,
            site_timeout_s=fed.site_timeout_s,
        )
        self.agent = Agent(
            AgentParts(
                db=self.db,
                identity=self.identity,
                peers=self.peers,
                policies=self.policies,
                ledger=self.ledger,
                registry=self.workflows,
                engine=self.flow,
                catalog=self.catalog,
                audit=self.audit,
                settings=fed,
            )
        )
        self._started = False
        self._warming: threading.Thread | None = None

    def start(self) -> None:
        """Start the background parts: series-complete monitor and, if enabled, DIMSE."""
        if self._started:
            return
        self.completion.start()
        self.metadata.start()
        if self.search_index is not None:  # load it now, not in the first search
            self._warming = threading.Thread(
                target=self.search_index.warm, name="kahu-column-index", daemon=True
            )
            self._warming.start()
        if self.settings.dicom.enabled:
            self.dicom.start()
        if self.settings.flow.enabled:
            self.flow.start()
            self.triggers.start()
            self.fed_runs.start()
            if self.settings.federation.agent:
                self.agent.start()
        self._started = True

    def stop(self) -> None:
        if self._started:
            if self.settings.flow.enabled:
                self.agent.stop()
                self.fed_runs.stop()
                self.triggers.stop()
                self.flow.stop()
            self.dicom.stop()
            self.completion.stop()
            self.metadata.stop()
            if self._warming is not None:  # it reads the database: let it finish first
                self._warming.join(timeout=60)
            self._started = False
        self.ingestor.close()
        self.db.dispose()

    def __enter__(self) -> Kahu:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def make_executor(flow: FlowSettings, home: Path) -> Executor:
    """The executor the settings name (Ray's is imported only when chosen)."""
    if flow.executor == "ray":
        from kahu.flow.executors.ray import RayExecutor

        return RayExecutor(home, address=flow.ray_address, memory_slack_mb=flow.memory_slack_mb)
    from kahu.flow.executors.local import LocalExecutor

    return LocalExecutor(
        home,
        isolation=flow.isolation,
        container_runtime=flow.container_runtime,
        memory_slack_mb=flow.memory_slack_mb,
    )
