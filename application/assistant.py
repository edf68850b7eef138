"""Assistant context, command side: roles and their settings, prompts, versions and labels.

Two kinds of aggregate share the ``assistant`` log (``domain/assistant``):
``AssistantConfig`` (every role with its model, settings and prompt: one document, one
``ETag``) and ``Prompt`` (one per prompt of a role: its immutable versions and labels).

What needs the world outside the aggregates is checked here, before the aggregate
records anything, and every bad field of a request is named in one ``InvalidFieldsError``
(HTTP 400):

- a **model reference** is resolved (``resolve_model``): a provider's model must be one
  the provider knows, and its context length bounds ``max_tokens``; a registry reference
  must name an LLM model of the registry and a version that exists (``@N``) or is active
  in the environment (``@production``), whose context length is its
  ``parameters.context_length``, else that of the provider model it names in
  ``parameters.serving``, else ``FALLBACK_CONTEXT_LENGTH``;
- a role's ``prompt_id`` must be a prompt of that role.

A prompt version pins what its model resolved to when it was committed (``runs_on``):
that is the lineage the registry's graph shows. The LLM providers come from the ports
(``Ports.llm``), built at the first use and closed with the application.

A **prompt test run** (F11.4.3, ``run_prompt_test``) renders versions of a prompt (or an
unsaved draft) with sample inputs, calls each one's model through its provider (in the
caller's worker thread: the API runs commands off the event loop), checks the
assertions and records the whole run as one ``PromptTestRun`` aggregate; a provider
failure (``LLMError``) propagates and nothing is recorded. Saved suites, the production
gate (``gated`` in ``move_label``/``rollback_label``) and runs too long to wait for (jobs)
are ``application.assistant_suites.SuitesMixin``, a base of this class.

**A/B experiments** (F11.4.5, ``domain.assistant.experiment``): ``start_experiment``
checks the definition (``validate_definition``) and that every variant is a version of a
prompt of the role, and occupies the role's ``ExperimentSlot`` in the same save (one
running experiment per role, 409 otherwise). What a role runs for a unit now is read from
the read models (``api.resolution``: it is asked on every agent call); ``expose`` records
a unit's exposure once (an ``Exposure`` per experiment and unit); ``record_outcome`` and
``conclude_experiment`` complete the picture. Concluding saves the experiment's
``Concluded``, the slot's ``Freed``, the winner prompt's ``LabelMoved`` (``production``)
and, when the role ran another prompt, the configuration's ``RoleChanged`` in one
transaction.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any, TypeVar, cast
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import IntegrityError

from application.assistant_suites import SuitesMixin
from application.base import (
    SNAPSHOT_INTERVAL,
    CommandResult,
    ContextApplication,
    Idempotency,
    Response,
    StoredResponse,
)
from application.ports import CompletionRequest, LLMError, LLMProvider, Ports, Unwired
from application.registry import MODEL_NAME_SCOPE, RegistryApplication
from domain.assistant.config import (
    CONFIG_ID,
    KEEP,
    AssistantConfig,
    Role,
    RolePatch,
    check_patch,
    check_role_key,
    check_role_settings,
)
from domain.assistant.experiment import (
    Experiment,
    ExperimentConflictError,
    ExperimentSlot,
    Exposure,
    check_unit,
)
from domain.assistant.experiments import (
    ExperimentDefinition,
    Variant,
    define_experiment,
    validate_definition,
)
from domain.assistant.models import (
    FALLBACK_CONTEXT_LENGTH,
    ModelRef,
    ResolvedModel,
    parse_model_ref,
    serving_of,
    stated_context_length,
)
from domain.assistant.prompt import Prompt, PromptVersion, check_name, check_version
from domain.assistant.prompt_runs import PromptTestRun, check_case_count, judged, rendered
from domain.assistant.prompts import (
    Assertion,
    FieldError,
    ModelSettings,
    PromptContent,
    canonical_overrides,
    check_templates,
    content_hash,
    invalid_fields,
    merge,
    validate_assertions,
    validate_settings,
)
from domain.assistant.suites import PromptTestJob, check_case_bound, runs_as_job
from domain.base import Aggregate
from domain.claims import UniqueClaim, claim_id
from domain.errors import (
    ConflictError,
    DuplicateNameError,
    NotFoundError,
    VersionConflictError,
)
from domain.registry.model import Model

PROMPT_NAME_SCOPE = "assistant/prompt-name"
T = TypeVar("T")


def prompt_claim_value(role: str, name: str) -> str:
    return f"{role}/{name}"


class AssistantApplication(SuitesMixin, ContextApplication):
    name = "assistant"
    snapshotting_intervals = {
        AssistantConfig: SNAPSHOT_INTERVAL,
        Prompt: SNAPSHOT_INTERVAL,
        ExperimentSlot: SNAPSHOT_INTERVAL,
    }

    def __init__(self, env: Mapping[str, str] | None = None, ports: Ports | None = None) -> None:
        super().__init__(env, ports)
        self._llm_factory = ports.llm if ports is not None else None
        self._providers: Mapping[str, LLMProvider] | None = None
        self._providers_lock = threading.Lock()

    # -- LLM providers ----------------------------------------------------------------------

    @property
    def providers(self) -> Mapping[str, LLMProvider]:
        """The LLM providers by name, built at the first use (loading nothing yet)."""
        with self._providers_lock:
            if self._providers is None:
                if self._llm_factory is None:
                    unwired: Any = Unwired("LLM provider registry")
                    return unwired
                self._providers = self._llm_factory()
            return self._providers

    def close(self) -> None:
        with self._providers_lock:
            providers, self._providers = self._providers, None
        close = getattr(providers, "close", None)  # LLMProviders has it; a fake may not
        if callable(close):
            close()
        super().close()

    # -- model references -------------------------------------------------------------------

    def resolve_model(
        self, text: str, registry: RegistryApplication, field_name: str
    ) -> ResolvedModel | FieldError:
        """What ``text`` names now and its context length, or what is wrong with it."""
        parsed = parse_model_ref(text, field_name)
        if isinstance(parsed, FieldError):
            return parsed
        if parsed.is_registry:
            return self._resolve_registry(parsed, registry, field_name)
        assert parsed.provider is not None
        length = self._provider_context_length(parsed.provider, parsed.name, field_name)
        if isinstance(length, FieldError):
            return length
        return ResolvedModel(text, length, provider=parsed.provider, provider_model=parsed.name)

    def _provider_context_length(
        self, provider_name: str, model: str, field_name: str
    ) -> int | FieldError:
        provider = self.providers.get(provider_name)
        if provider is None:
            known = ", ".join(sorted(self.providers)) or "none"
            return FieldError(
                field_name, f"no LLM provider {provider_name!r} is configured here ({known})"
            )
        try:
            return provider.context_length(model)
        except LLMError as exc:
            return FieldError(field_name, str(exc))

    def _resolve_registry(
        self, ref: ModelRef, registry: RegistryApplication, field_name: str
    ) -> ResolvedModel | FieldError:
        model = registry_model(ref.name, registry)
        if model is None:
            return FieldError(field_name, f"the registry has no model {ref.name!r}")
        if model.kind != "llm":
            return FieldError(
                field_name, f"{model.name!r} is an {model.kind} model; a role needs an llm model"
            )
        number = ref.version if ref.environment is None else model.active.get(ref.environment)
        if number is None:
            return FieldError(
                field_name, f"{model.name!r} has no version active in {ref.environment}"
            )
        version = model.versions.get(number)
        if version is None:
            return FieldError(field_name, f"{model.name!r} has no version {number}")
        serving = serving_of(version.parameters)
        length = stated_context_length(version.parameters)
        if length is None and serving is not None:
            assert serving.provider is not None
            asked = self._provider_context_length(serving.provider, serving.name, field_name)
            if isinstance(asked, FieldError):
                return asked
            length = asked
        return ResolvedModel(
            ref.text,
            length or FALLBACK_CONTEXT_LENGTH,
            provider=serving.provider if serving else None,
            provider_model=serving.name if serving else None,
            registry_model_id=str(model.id),
            registry_model_name=model.name,
            registry_version=number,
        )

    # -- reads of the write side ------------------------------------------------------------

    def get_config(self) -> AssistantConfig | None:
        """The configuration, or None before the first role was added."""
        try:
            return self.load(CONFIG_ID, AssistantConfig, "assistant configuration")
        except NotFoundError:
            return None

    def get_config_as_of(self, as_of: datetime) -> AssistantConfig | None:
        try:
            aggregate, _ = self.replay_as_of(CONFIG_ID, as_of)
        except NotFoundError:
            return None
        assert isinstance(aggregate, AssistantConfig)
        return aggregate

    def get_prompt(self, prompt_id: UUID) -> Prompt:
        return self.load(prompt_id, Prompt, "prompt")

    def get_prompt_as_of(self, prompt_id: UUID, as_of: datetime) -> Prompt:
        """The prompt as it was at ``as_of``; 404 before it existed."""
        self.get_prompt(prompt_id)
        aggregate, _ = self.replay_as_of(prompt_id, as_of)
        assert isinstance(aggregate, Prompt)
        return aggregate

    def prompt_or_none(self, prompt_id: str, as_of: datetime | None = None) -> Prompt | None:
        """The prompt (as it was at ``as_of``), or None when there is none (then)."""
        try:
            if as_of is None:
                return self.get_prompt(UUID(prompt_id))
            return self.get_prompt_as_of(UUID(prompt_id), as_of)
        except (NotFoundError, ValueError):
            return None

    def find_prompt(self, role: str, name: str) -> UUID | None:
        """The id of the prompt ``name`` of ``role``, if there is one."""
        try:
            claim: Any = self.repository.get(
                claim_id(PROMPT_NAME_SCOPE, prompt_claim_value(role, name))
            )
        except AggregateNotFoundError:
            return None
        return UUID(claim.owner_id)

    @staticmethod
    def check_expected_version(aggregate: Aggregate, expected: int | None) -> None:
        """As the base's, where a configuration not saved yet is version 0 (its ETag)."""
        stored = aggregate.version - len(aggregate.pending_events)
        if expected is not None and expected != stored:
            raise VersionConflictError(expected, stored)

    # -- roles ------------------------------------------------------------------------------

    def _change_config(
        self,
        act: Callable[[AssistantConfig], T],
        respond: Callable[[AssistantConfig, T], Response],
        expected_version: int | None,
        idem: Idempotency | None,
    ) -> CommandResult[StoredResponse]:
        return self.change_aggregate(
            lambda: self.get_config() or AssistantConfig.start(),
            act,
            respond,
            expected_version=expected_version,
            idem=idem,
            retry=True,  # without If-Match a partial change is simply made on the newest
        )

    def add_role(  # noqa: PLR0913
        self,
        *,
        key: str,
        name: str,
        description: str,
        model: str,
        settings: Mapping[str, Any],
        reason: str,
        registry: RegistryApplication,
        expected_version: int | None = None,
        idem: Idempotency | None = None,
        respond: Callable[[AssistantConfig, Role], Response],
        require_suite_pass: bool = False,
    ) -> CommandResult[StoredResponse]:
        """Add a role running ``model`` with ``settings`` over the defaults (no prompt yet)."""

        def act(config: AssistantConfig) -> Role:
            resolved = self.resolve_model(model, registry, "model")
            errors = [resolved] if isinstance(resolved, FieldError) else []
            limit = None if isinstance(resolved, FieldError) else resolved.context_length
            errors += check_role_key(key) + check_role_settings(settings, limit, "settings.")
            if errors:
                raise invalid_fields(errors)
            assert limit is not None
            return config.add_role(
                key=key,
                name=name,
                description=description,
                model=model,
                settings=settings,
                limit=limit,
                reason=reason,
                require_suite_pass=require_suite_pass,
            )

        return self._change_config(act, respond, expected_version, idem)

    def update_config(  # noqa: PLR0913
        self,
        patches: Sequence[RolePatch],
        *,
        reason: str,
        registry: RegistryApplication,
        expected_version: int | None = None,
        idem: Idempotency | None = None,
        respond: Callable[[AssistantConfig, list[str]], Response],
    ) -> CommandResult[StoredResponse]:
        """Change the settings of one or more roles at once: all of them, or (400 naming
        every bad field) none."""

        def act(config: AssistantConfig) -> list[str]:
            errors = self._check_patches(config, patches, registry)
            if errors:
                raise invalid_fields(errors)
            return config.change_roles(patches, reason)

        return self._change_config(act, respond, expected_version, idem)

    def _check_patches(
        self, config: AssistantConfig, patches: Sequence[RolePatch], registry: RegistryApplication
    ) -> list[FieldError]:
        errors: list[FieldError] = []
        seen: dict[str, int] = {}
        for i, patch in enumerate(patches):
            prefix = f"roles[{i}]."
            role = config.get_role(patch.role)
            if patch.role in seen:
                errors.append(FieldError(prefix + "role", f"repeats roles[{seen[patch.role]}]"))
                continue
            seen[patch.role] = i
            if role is None:
                errors.append(FieldError(prefix + "role", f"there is no role {patch.role!r}"))
                continue
            limit: int | None = None
            if patch.model is not None or "max_tokens" in patch.settings:
                resolved = self.resolve_model(patch.model or role.model, registry, prefix + "model")
                if isinstance(resolved, FieldError):
                    errors.append(_about_current(resolved, role.model, patch.model is None))
                else:
                    limit = resolved.context_length
            errors += check_patch(role, patch, limit, prefix)
            if patch.prompt_id is not KEEP and patch.prompt_id is not None:
                errors += self._prompt_of_role(patch.prompt_id, patch.role, prefix + "prompt_id")
        return errors

    def _prompt_of_role(self, prompt_id: str, role: str, field_name: str) -> list[FieldError]:
        try:
            prompt = self.get_prompt(UUID(prompt_id))
        except (NotFoundError, ValueError):
            return [FieldError(field_name, f"there is no prompt {prompt_id}")]
        if prompt.role != role:
            return [FieldError(field_name, f"prompt {prompt_id} is a prompt of {prompt.role!r}")]
        return []

    # -- prompts ----------------------------------------------------------------------------

    def create_prompt(
        self,
        *,
        role: str,
        name: str,
        description: str,
        idem: Idempotency | None = None,
        respond: Callable[[Prompt], Response],
    ) -> CommandResult[StoredResponse]:
        """A new prompt of ``role``, without versions; a name taken in the role is a 409."""
        replay = self.idempotent_replay(idem)
        if replay is not None:
            return replay
        config = self.get_config()
        errors = check_name(name)
        if config is None or config.get_role(role) is None:
            errors.append(FieldError("role", f"there is no role {role!r}"))
        if errors:
            raise invalid_fields(errors)
        prompt = Prompt.create(role=role, name=name, description=description)
        claim = UniqueClaim.claim(PROMPT_NAME_SCOPE, prompt_claim_value(role, name), str(prompt.id))
        return self.save_command(
            [prompt, claim],
            idem,
            lambda: respond(prompt),
            lambda: DuplicateNameError(f"role {role!r} already has a prompt named {name!r}"),
        )

    def change_prompt(
        self,
        prompt_id: UUID,
        act: Callable[[Prompt], T],
        respond: Callable[[Prompt, T], Response],
        *,
        expected_version: int | None = None,
        idem: Idempotency | None = None,
    ) -> CommandResult[StoredResponse]:
        return self.change_aggregate(
            lambda: self.get_prompt(prompt_id),
            act,
            respond,
            expected_version=expected_version,
            idem=idem,
        )

    def commit_version(  # noqa: PLR0913
        self,
        prompt_id: UUID,
        content: PromptContent,
        *,
        model: str | None,
        message: str,
        registry: RegistryApplication,
        expected_version: int | None = None,
        idem: Idempotency | None = None,
        respond: Callable[[Prompt, tuple[PromptVersion, bool]], Response],
    ) -> CommandResult[StoredResponse]:
        """A new immutable version, or (False) the latest when identical to it."""

        def act(prompt: Prompt) -> tuple[PromptVersion, bool]:
            role = self._role_of(prompt)
            resolved = self.resolve_model(model or role.model, registry, "model")
            errors: list[FieldError] = []
            if isinstance(resolved, FieldError):
                errors.append(_about_current(resolved, role.model, model is None))
            limit = None if isinstance(resolved, FieldError) else resolved.context_length
            errors += check_version(content, limit)
            if errors:
                raise invalid_fields(errors)
            assert isinstance(resolved, ResolvedModel)
            return prompt.commit(
                content,
                model=model,
                runs_on=resolved.runs_on(),
                limit=resolved.context_length,
                message=message,
            )

        return self.change_prompt(
            prompt_id, act, respond, expected_version=expected_version, idem=idem
        )

    def _role_of(self, prompt: Prompt) -> Role:
        config = self.get_config()
        role = config.get_role(prompt.role) if config is not None else None
        if role is None:  # roles are never removed: a prompt's role always exists
            raise NotFoundError(f"role {prompt.role!r} of prompt {prompt.id} not found")
        return role

    def move_label(  # noqa: PLR0913
        self,
        prompt_id: UUID,
        label: str,
        version: int,
        reason: str,
        *,
        expected_version: int | None = None,
        idem: Idempotency | None = None,
        respond: Callable[[Prompt, bool], Response],
    ) -> CommandResult[StoredResponse]:
        return self.change_prompt(
            prompt_id,
            lambda p: self.gated(p, label, p.move_label(label, version, reason)),
            respond,
            expected_version=expected_version,
            idem=idem,
        )

    def rollback_label(  # noqa: PLR0913
        self,
        prompt_id: UUID,
        label: str,
        version: int | None,
        reason: str,
        *,
        expected_version: int | None = None,
        idem: Idempotency | None = None,
        respond: Callable[[Prompt, object], Response],
    ) -> CommandResult[StoredResponse]:
        return self.change_prompt(
            prompt_id,
            lambda p: self.gated(p, label, p.rollback(label, version, reason)),
            respond,
            expected_version=expected_version,
            idem=idem,
        )

    def remove_label(  # noqa: PLR0913
        self,
        prompt_id: UUID,
        label: str,
        reason: str,
        *,
        expected_version: int | None = None,
        idem: Idempotency | None = None,
        respond: Callable[[Prompt, None], Response],
    ) -> CommandResult[StoredResponse]:
        return self.change_prompt(
            prompt_id,
            lambda p: p.remove_label(label, reason),
            respond,
            expected_version=expected_version,
            idem=idem,
        )

    # -- prompt tests -----------------------------------------------------------------------

    def run_prompt_test(  # noqa: PLR0913
        self,
        prompt_id: UUID,
        *,
        versions: Sequence[int | str],
        draft: PromptContent | None,
        inputs: Sequence[tuple[str, Mapping[str, str]]],
        assertions: Sequence[Mapping[str, Any]],
        settings: Mapping[str, Any],
        reason: str,
        registry: RegistryApplication,
        idem: Idempotency | None = None,
        respond: Callable[[PromptTestRun], Response],
        as_job: bool = False,
        respond_job: Callable[[PromptTestJob], Response] | None = None,
        suite: dict[str, Any] | None = None,
    ) -> CommandResult[StoredResponse]:
        """Run each version (a number, a label or ``latest``) and the draft against each
        input and record the run; every bad field is named first (400), before any call.
        With ``respond_job``, a run of more than ``SYNC_CASES`` cases (or ``as_job``) is
        queued as a ``PromptTestJob`` instead (``assistant_suites``)."""
        replay = self.idempotent_replay(idem)
        if replay is not None:
            return replay
        prompt = self.get_prompt(prompt_id)
        role = self._role_of(prompt)
        plan, errors = self._test_subjects(prompt, role, versions, draft, settings, registry)
        errors += validate_assertions(assertions)
        bound = check_case_count if respond_job is None else check_case_bound
        errors += bound(len(plan), len(inputs))
        if errors:
            raise invalid_fields(errors)
        checks = [Assertion(a["kind"], a.get("value")) for a in assertions]
        if respond_job is not None and runs_as_job(len(plan) * len(inputs), as_job):
            args = (prompt, plan, inputs, checks, settings, reason, suite, idem)
            return self.queue_test_job(*args, respond_job)
        cases = [
            self._run_case(subject, content, n, name, values, checks)
            for subject, content in plan
            for n, (name, values) in enumerate(inputs)
        ]
        args2 = (prompt, plan, inputs, checks, settings, cases, reason, suite, idem)
        return self.record_test_run(*args2, respond)

    def _test_subjects(  # noqa: PLR0913
        self,
        prompt: Prompt,
        role: Role,
        versions: Sequence[int | str],
        draft: PromptContent | None,
        settings: Mapping[str, Any],
        registry: RegistryApplication,
    ) -> tuple[list[tuple[dict[str, Any], PromptContent]], list[FieldError]]:
        """What runs: each version (or the draft) with its model and effective settings."""
        errors: list[FieldError] = []
        plan: list[tuple[dict[str, Any], PromptContent]] = []
        if not versions and draft is None:
            errors.append(FieldError("versions", "name at least one version, or give a draft"))
        seen: dict[int, int] = {}
        for i, asked in enumerate(versions):
            where = f"versions[{i}]"
            try:
                number = prompt.resolve(asked)
            except NotFoundError:
                known = f"latest is {prompt.latest_version}" if prompt.latest_version else "none"
                errors.append(FieldError(where, f"the prompt has no version {asked!r} ({known})"))
                continue
            if number in seen:
                repeated = f"names version {number}, as versions[{seen[number]}] does"
                errors.append(FieldError(where, repeated))
                continue
            seen[number] = i
            version = prompt.versions[number]
            subject = self._test_subject(
                role, version.model, version.content, settings, registry, where, errors
            )
            if subject is not None:
                subject.update(version=number, asked=asked, content_hash=version.content_hash)
                plan.append((subject, version.content))
        if draft is not None:
            found = check_templates(draft.system_template, draft.user_template, draft.variables)
            errors += [FieldError(f"draft.{e.field}", e.message) for e in found]
            subject = self._test_subject(role, None, draft, settings, registry, "draft", errors)
            if subject is not None and not found:
                subject.update(version=None, asked=None, content_hash=content_hash(draft))
                plan.append((subject, draft))
        return plan, errors

    def _test_subject(  # noqa: PLR0913
        self,
        role: Role,
        model: str | None,
        content: PromptContent,
        settings: Mapping[str, Any],
        registry: RegistryApplication,
        where: str,
        errors: list[FieldError],
    ) -> dict[str, Any] | None:
        """The model and settings ``content`` runs with, or None (``errors`` say why)."""
        ref = model or role.model
        resolved = self.resolve_model(ref, registry, where)
        if isinstance(resolved, FieldError):
            errors.append(FieldError(where, f"its model {ref!r} cannot run: {resolved.message}"))
            return None
        if resolved.provider is None or resolved.provider_model is None:
            errors.append(FieldError(where, f"its model {ref!r} names no provider model to call"))
            return None
        limit = resolved.context_length
        problems = validate_settings(content.overrides, limit, f"{where}.overrides.")
        problems += validate_settings(settings, limit, "settings.")
        if problems:
            errors += [p for p in problems if p not in errors]
            return None
        effective = merge(merge(role.settings, content.overrides), settings)
        over = _over_limit(effective.max_tokens, resolved)
        if over is not None:
            errors.append(FieldError("settings.max_tokens", f"{over}: lower it for this test"))
            return None
        return {
            "draft": where == "draft",
            "model": ref,
            "provider": resolved.provider,
            "provider_model": resolved.provider_model,
            "settings": effective.as_dict(),
        }

    def _run_case(  # noqa: PLR0913
        self,
        subject: dict[str, Any],
        content: PromptContent,
        number: int,
        name: str,
        values: Mapping[str, str],
        checks: Sequence[Assertion],
    ) -> dict[str, Any]:
        """One case: render, complete (``LLMError`` propagates), judge."""
        case: dict[str, Any] = {
            "version": subject["version"],
            "draft": subject["draft"],
            "input": number,
            "input_name": name,
            "rendered_system": None,
            "rendered_user": None,
            "output": None,
            "latency_ms": None,
            "tokens_in": None,
            "tokens_out": None,
            "finish_reason": None,
            "model": None,
            "assertions": [],
            "passed": False,
            "error": None,
        }
        messages = rendered(content.system_template, content.user_template, values)
        if isinstance(messages, str):
            case["error"] = messages
            return case
        system, user = messages
        s = subject["settings"]
        provider = self.providers[subject["provider"]]
        completion = provider.complete(
            CompletionRequest(
                system=system,
                user=user,
                model=subject["provider_model"],
                temperature=s["temperature"],
                max_tokens=s["max_tokens"],
                top_p=s["top_p"],
                stop=tuple(s["stop"]),
                seed=s["seed"],
            )
        )
        output = completion.text.replace("\x00", "\ufffd")  # no read model stores NUL
        verdicts, passed = judged(checks, output, completion.latency_ms)
        case.update(
            rendered_system=system,
            rendered_user=user,
            output=output,
            latency_ms=round(completion.latency_ms, 3),
            tokens_in=completion.tokens_in,
            tokens_out=completion.tokens_out,
            finish_reason=completion.finish_reason,
            model=completion.model,
            assertions=verdicts,
            passed=passed,
        )
        return case

    def get_test_run(self, run_id: UUID) -> PromptTestRun:
        return self.load(run_id, PromptTestRun, "prompt test run")

    # -- A/B experiments --------------------------------------------------------------------

    def get_experiment(self, experiment_id: UUID) -> Experiment:
        return self.load(experiment_id, Experiment, "experiment")

    def _slot(self, role: str) -> ExperimentSlot | None:
        try:
            slot: Any = self.repository.get(ExperimentSlot.id_for(role))
        except AggregateNotFoundError:
            return None
        return slot if isinstance(slot, ExperimentSlot) else None

    def start_experiment(  # noqa: PLR0913
        self,
        *,
        role: str,
        variants: Sequence[Variant],
        unit: str,
        metric: str,
        min_sample: int,
        salt: str | None,
        reason: str,
        registry: RegistryApplication,
        idem: Idempotency | None = None,
        respond: Callable[[Experiment], Response],
    ) -> CommandResult[StoredResponse]:
        """Start an experiment of ``role``'s prompt versions: 400 naming every bad field
        (the variants must be versions of prompts of the role), 409 when the role already
        runs one."""
        replay = self.idempotent_replay(idem)
        if replay is not None:
            return replay
        config = self.get_config()
        found = config.get_role(role) if config is not None and isinstance(role, str) else None
        limit: int | None = None
        if found is not None:
            resolved = self.resolve_model(found.model, registry, "role")
            limit = None if isinstance(resolved, FieldError) else resolved.context_length
        errors = validate_definition(
            role=role,
            variants=variants,
            unit=unit,
            metric=metric,
            min_sample=min_sample,
            salt=salt,
            max_tokens_limit=limit,
        )
        if found is None and not any(e.field == "role" for e in errors):
            errors.append(FieldError("role", f"there is no role {role!r}"))
        if found is not None:
            errors += self._check_variant_versions(role, variants)
        if errors:
            raise invalid_fields(errors)
        definition = define_experiment(
            role=role,
            variants=variants,
            unit=unit,
            metric=metric,
            min_sample=min_sample,
            salt=salt,
            max_tokens_limit=limit,
        )
        experiment = Experiment.start(definition, reason)
        slot = self._slot(role) or ExperimentSlot.open(role)
        slot.occupy(str(experiment.id))
        return self.save_command(
            [experiment, slot],
            idem,
            lambda: respond(experiment),
            lambda: ExperimentConflictError(
                f"another experiment of role {role!r} started at the same time"
            ),
        )

    def _check_variant_versions(self, role: str, variants: Sequence[Variant]) -> list[FieldError]:
        errors: list[FieldError] = []
        for i, variant in enumerate(variants):
            if not isinstance(variant, Variant) or not isinstance(variant.prompt_id, str):
                continue
            where = f"variants[{i}]"
            prompt = self.prompt_or_none(variant.prompt_id)
            if prompt is None:
                errors.append(FieldError(where, f"there is no prompt {variant.prompt_id}"))
            elif prompt.role != role:
                errors.append(
                    FieldError(where, f"prompt {prompt.id} is a prompt of {prompt.role!r}")
                )
            elif variant.prompt_version not in prompt.versions:
                known = prompt.latest_version or "none"
                errors.append(
                    FieldError(
                        where,
                        f"prompt {prompt.id} has no version {variant.prompt_version} "
                        f"(latest: {known})",
                    )
                )
        return errors

    def complete(
        self,
        resolution: Mapping[str, Any],
        variables: Mapping[str, str],
        registry: RegistryApplication,
    ) -> dict[str, Any]:
        """Run what ``resolve`` answered: render its version with ``variables`` (400 naming
        ``variables`` when one is missing) and call its model (in the caller's worker
        thread; ``LLMError`` propagates). Records nothing: the exposure is ``expose``'s."""
        prompt = self.get_prompt(UUID(resolution["prompt_id"]))
        content = prompt.get_version(resolution["prompt_version"]).content
        messages = rendered(content.system_template, content.user_template, variables)
        if isinstance(messages, str):
            raise invalid_fields([FieldError("variables", messages)])
        ref = resolution["model"]
        resolved = self.resolve_model(ref, registry, "model")
        if isinstance(resolved, FieldError):
            raise ConflictError(f"the model {ref!r} cannot run now: {resolved.message}")
        if resolved.provider is None or resolved.provider_model is None:
            raise ConflictError(f"the model {ref!r} names no provider model to call")
        s = resolution["settings"]
        over = _over_limit(s["max_tokens"], resolved)
        if over is not None:
            raise ConflictError(f"{over}: lower the role's max_tokens")
        completion = self.providers[resolved.provider].complete(
            CompletionRequest(
                system=messages[0],
                user=messages[1],
                model=resolved.provider_model,
                temperature=s["temperature"],
                max_tokens=s["max_tokens"],
                top_p=s["top_p"],
                stop=tuple(s["stop"]),
                seed=s["seed"],
            )
        )
        return {
            "output": completion.text,
            "latency_ms": round(completion.latency_ms, 3),
            "tokens_in": completion.tokens_in,
            "tokens_out": completion.tokens_out,
            "finish_reason": completion.finish_reason,
            "provider_model": completion.model,
        }

    def expose(
        self, experiment_id: str, definition: ExperimentDefinition, unit: str
    ) -> tuple[bool, int]:
        """Record ``unit``'s exposure to its variant once: whether this call recorded it,
        and the log position. The unit's ``Exposure`` has an id derived from experiment
        and unit, so a second exposure (a retry, a racing resolve in another process) is
        refused by the event store's uniqueness and records nothing; no aggregate is
        loaded and nothing waits on the experiment."""
        try:
            [recording] = self.save(Exposure.expose(experiment_id, definition, unit))
        except IntegrityError:
            return False, self.recorder.max_notification_id() or 0
        return True, recording.notification.id

    def record_outcome(
        self,
        experiment_id: UUID,
        unit: str,
        value: float,
        *,
        idem: Idempotency | None = None,
        respond: Callable[[Exposure, int], Response],
    ) -> CommandResult[StoredResponse]:
        """A unit's outcome, on its ``Exposure``: 404 unknown experiment, 409 when it is
        concluded or the unit was never exposed, 400 a value its metric refuses."""
        errors = check_unit(unit)
        if errors:
            raise invalid_fields(errors)
        experiment = self.get_experiment(experiment_id)
        experiment.check_running("it takes no more outcomes")

        def load() -> Exposure:
            try:
                found: Any = self.repository.get(Exposure.id_for(str(experiment_id), unit))
            except AggregateNotFoundError:
                raise ExperimentConflictError(
                    f"unit {unit!r} was never exposed in experiment {experiment_id}: "
                    "resolve it first"
                ) from None
            return cast("Exposure", found)

        return self.change_aggregate(
            load,
            lambda exposure: exposure.record_outcome(experiment.definition.metric, value),
            respond,
            idem=idem,
            retry=True,  # two outcomes of one unit at once: both are recorded
        )

    def conclude_experiment(  # noqa: PLR0913
        self,
        experiment_id: UUID,
        winner: int,
        reason: str,
        *,
        registry: RegistryApplication,
        expected_version: int | None = None,
        idem: Idempotency | None = None,
        respond: Callable[[Experiment, bool], Response],
    ) -> CommandResult[StoredResponse]:
        """Conclude: assignment stops and what won becomes ``production`` (and the role
        runs the winner's prompt), all in one transaction. A winner that ran with settings
        of its own becomes a new version first (``_winning_version``). Concluding again
        with the same winner is a no-op."""
        replay = self.idempotent_replay(idem)
        if replay is not None:
            return replay
        experiment = self.get_experiment(experiment_id)
        if experiment.running:  # a retry of a conclusion that happened is no conflict
            self.check_expected_version(experiment, expected_version)
        if not experiment.concluding(winner):
            position = self.recorder.max_notification_id() or 0
            return CommandResult(self.name, position, StoredResponse(*respond(experiment, False)))
        chosen = experiment.definition.variants[winner]
        why = f"experiment {experiment.id} concluded: {reason}".strip()
        # a role gated on its suite needs the winner's version to have passed it (a winner
        # with settings of its own becomes a new version: the suite ran its templates)
        self.check_production_gate(UUID(chosen.prompt_id), chosen.prompt_version)
        prompt = self.get_prompt(UUID(chosen.prompt_id))
        production = self._winning_version(prompt, experiment, winner, registry)
        experiment.conclude(winner, reason, production)
        changed: list[Aggregate] = [experiment]
        slot = self._slot(experiment.role)
        if slot is not None:
            slot.free(str(experiment.id))
            changed.append(slot)
        if prompt.move_label("production", production, why) or production != chosen.prompt_version:
            changed.append(prompt)
        config = self.get_config()
        role = config.get_role(experiment.role) if config is not None else None
        if config is not None and role is not None and role.prompt_id != chosen.prompt_id:
            config.change_roles([RolePatch(experiment.role, prompt_id=chosen.prompt_id)], why)
            changed.append(config)
        return self.save_command(
            changed,
            idem,
            lambda: respond(experiment, True),
            lambda: self.version_conflict(experiment.id, expected_version),
        )

    def _winning_version(
        self,
        prompt: Prompt,
        experiment: Experiment,
        winner: int,
        registry: RegistryApplication,
    ) -> int:
        """The version production should run for ``winner``: its own version when it ran
        with that version's settings; else a new version of the prompt (committed on
        ``prompt``, saved with the conclusion) whose overrides include the variant's
        settings, checked against the model's context length as it is now."""
        chosen = experiment.definition.variants[winner]
        version = prompt.get_version(chosen.prompt_version)
        overrides = canonical_overrides({**version.content.overrides, **chosen.settings})
        if overrides == canonical_overrides(version.content.overrides):
            return chosen.prompt_version
        role = self._role_of(prompt)
        resolved = self.resolve_model(version.model or role.model, registry, "model")
        if isinstance(resolved, FieldError):
            raise ConflictError(
                f"the winner's model cannot run now ({resolved.message}): "
                "the winner's settings cannot become a version"
            )
        made, _ = prompt.commit(
            replace(version.content, overrides=overrides),
            model=version.model,
            runs_on=resolved.runs_on(),
            limit=resolved.context_length,
            message=f"experiment {experiment.id}: variant {winner} (version "
            f"{chosen.prompt_version} with the settings {', '.join(sorted(chosen.settings))} "
            "it won with)",
        )
        return made.number


def _over_limit(max_tokens: int, resolved: ResolvedModel) -> str | None:
    """Why ``max_tokens`` cannot run on the model as it resolves now (None: it can).
    Checked when settings are saved, it is checked again when they run: a registry
    reference (``@production``) may name another version since, with a shorter context."""
    if max_tokens <= resolved.context_length:
        return None
    where = (
        f"{resolved.registry_model_name} version {resolved.registry_version}"
        if resolved.registry_version is not None
        else resolved.ref
    )
    return (
        f"max_tokens {max_tokens} is over the context length {resolved.context_length} of "
        f"{where}, which the model reference {resolved.ref!r} names now"
    )


def _about_current(error: FieldError, current: str, is_current: bool) -> FieldError:
    """A model error; about the role's own model when the request named none."""
    if not is_current:
        return error
    return FieldError(
        error.field,
        f"the role's model {current!r} cannot be used now ({error.message}): name a model",
    )


def registry_model(name_or_id: str, registry: RegistryApplication) -> Model | None:
    """The registry's model by id or by name, or None."""
    try:
        model_id = UUID(name_or_id)
    except ValueError:
        try:
            claim: Any = registry.repository.get(claim_id(MODEL_NAME_SCOPE, name_or_id))
        except AggregateNotFoundError:
            return None
        model_id = UUID(claim.owner_id)
    try:
        found: Any = registry.repository.get(model_id)
    except AggregateNotFoundError:
        return None
    return found if isinstance(found, Model) else None


def registry_target(
    ref_text: str, registry: RegistryApplication, as_of: datetime | None = None
) -> dict[str, Any] | None:
    """The registry version a registry reference names now, or named at ``as_of`` (None
    when it names none, or is a provider's model)."""
    ref = parse_model_ref(ref_text)
    if not isinstance(ref, ModelRef) or not ref.is_registry:
        return None
    model = registry_model(ref.name, registry)
    if model is not None and as_of is not None:
        try:
            model = registry.get_model_as_of(model.id, as_of)
        except NotFoundError:
            model = None
    if model is None:
        return None
    number = ref.version if ref.environment is None else model.active.get(ref.environment)
    if number is None or number not in model.versions:
        return None
    return {
        "model_id": str(model.id),
        "model_name": model.name,
        "version": number,
        "context_length": stated_context_length(model.versions[number].parameters),
    }


def effective_settings(role: ModelSettings, overrides: Mapping[str, Any]) -> ModelSettings:
    """What a version runs with: its role's settings with the version's overrides."""
    return merge(role, overrides)
