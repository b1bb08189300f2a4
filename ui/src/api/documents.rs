//! Enrollments and enrollment groups alike, as the console model's [`Document`]: one page of a search, one
//! document, create, write, delete, key renewal, export and import (bulk `create` or `update` in batches).

use dps_console_model::document::Document;
use dps_console_model::enrollment_form::FormKind;
use dps_console_model::transfer::{self, Format, ImportError, BATCH_SIZE};
use dps_proto::{BulkEnrollmentOperationResult, BulkMode, Enrollment, EnrollmentGroup, IndividualEnrollment};

use super::{ApiClient, ApiError, PageOf};

/// What an import did: documents created (or replaced), documents refused, and why.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ImportSummary {
    pub imported: usize,
    pub failed: usize,
    pub problems: Vec<String>,
}

impl ImportSummary {
    /// An import that did not start (the file could not be read).
    pub fn unread(problem: String) -> Self {
        Self { imported: 0, failed: 0, problems: vec![problem] }
    }

    /// Counts one bulk answer for a batch of `sent` documents.
    fn add_answer(&mut self, sent: usize, answer: Result<BulkEnrollmentOperationResult, ApiError>) {
        match answer {
            Ok(r) => {
                let (ok, failed) = transfer::tally(sent, &r);
                self.imported += ok;
                self.failed += failed;
                self.problems.extend(transfer::bulk_failures(&r));
            }
            Err(e) => {
                self.failed += sent;
                self.problems.push(format!("a batch of {sent} was refused: {e}"));
            }
        }
    }

    fn add_unreadable(&mut self, errors: Vec<ImportError>) {
        self.failed += errors.len();
        self.problems.extend(errors.iter().map(ImportError::to_string));
    }
}

impl ApiClient {
    /// One page of enrollments or groups whose id contains `search`, after `token`.
    pub async fn documents_page(&self, kind: FormKind, search: &str, token: Option<String>) -> Result<PageOf<Document>, ApiError> {
        Ok(match kind {
            FormKind::Individual => {
                let (items, next, total) = self.page_of(search, token).await?;
                (items.into_iter().map(|e| Document::Individual(Box::new(e))).collect(), next, total)
            }
            FormKind::Group => {
                let (items, next, total) = self.page_of(search, token).await?;
                (items.into_iter().map(|g| Document::Group(Box::new(g))).collect(), next, total)
            }
        })
    }

    /// One enrollment or group, with its etag.
    pub async fn document(&self, kind: FormKind, id: &str) -> Result<Document, ApiError> {
        Ok(match kind {
            FormKind::Individual => Document::Individual(Box::new(self.get_of(id).await?)),
            FormKind::Group => Document::Group(Box::new(self.get_of(id).await?)),
        })
    }

    /// Writes a document (`If-Match` with its etag, when it has one).
    pub async fn put_document(&self, doc: &Document) -> Result<Document, ApiError> {
        Ok(match doc {
            Document::Individual(e) => Document::Individual(Box::new(self.put_of(&**e).await?)),
            Document::Group(g) => Document::Group(Box::new(self.put_of(&**g).await?)),
        })
    }

    /// Creates a document with a bulk `create`: refused (409) when the id exists, where a PUT would replace it.
    pub async fn create_document(&self, doc: &Document) -> Result<(), ApiError> {
        let result = match doc {
            Document::Individual(e) => {
                self.bulk_of::<IndividualEnrollment>(&Enrollment::bulk_of(BulkMode::Create, vec![(**e).clone()])).await?
            }
            Document::Group(g) => self.bulk_of::<EnrollmentGroup>(&Enrollment::bulk_of(BulkMode::Create, vec![(**g).clone()])).await?,
        };
        match result.errors.into_iter().next() {
            None => Ok(()),
            Some(e) => Err(ApiError::Service {
                status: u16::try_from(e.error_code / 1000).unwrap_or(400),
                details: dps_proto::ProvisioningServiceErrorDetails {
                    error_code: e.error_code,
                    tracking_id: String::new(),
                    message: e.error_status,
                    timestamp_utc: String::new(),
                    info: None,
                },
            }),
        }
    }

    /// Deletes a document (`If-Match` with its etag).
    pub async fn delete_document(&self, doc: &Document) -> Result<(), ApiError> {
        match doc {
            Document::Individual(e) => self.delete_of::<IndividualEnrollment>(e.id(), e.etag()).await,
            Document::Group(g) => self.delete_of::<EnrollmentGroup>(g.id(), g.etag()).await,
        }
    }

    /// New primary and secondary keys for a document.
    pub async fn renew_document_keys(&self, doc: &Document) -> Result<(), ApiError> {
        match doc {
            Document::Individual(e) => self.renew_keys_of::<IndividualEnrollment>(e.id(), "both").await.map(|_| ()),
            Document::Group(g) => self.renew_keys_of::<EnrollmentGroup>(g.id(), "both").await.map(|_| ()),
        }
    }

    /// Every document of a kind in a file's format.
    pub async fn export_documents(&self, kind: FormKind, format: Format) -> Result<String, ApiError> {
        Ok(match (kind, format) {
            (FormKind::Individual, Format::Json) => transfer::enrollments_to_json(&self.all_of().await?),
            (FormKind::Individual, Format::Csv) => transfer::enrollments_to_csv(&self.all_of().await?),
            (FormKind::Group, Format::Json) => transfer::groups_to_json(&self.all_of().await?),
            (FormKind::Group, Format::Csv) => transfer::groups_to_csv(&self.all_of().await?),
        })
    }

    /// Sends the importable documents of the file `name` in batches of [`BATCH_SIZE`] (bulk `mode`), calling
    /// `progress(sent, total)` before the first batch and after each one.
    pub async fn import_documents(
        &self,
        kind: FormKind,
        name: &str,
        text: &str,
        mode: BulkMode,
        progress: impl Fn(usize, usize),
    ) -> ImportSummary {
        let mut summary = ImportSummary::default();
        match kind {
            FormKind::Individual => self.import_batches(transfer::import_enrollments(name, text), mode, &progress, &mut summary).await,
            FormKind::Group => self.import_batches(transfer::import_groups(name, text), mode, &progress, &mut summary).await,
        }
        summary
    }

    /// The readable documents of an import in bulk batches of [`BATCH_SIZE`].
    async fn import_batches<E: Enrollment>(
        &self,
        read: transfer::Imported<E>,
        mode: BulkMode,
        progress: &impl Fn(usize, usize),
        summary: &mut ImportSummary,
    ) {
        summary.add_unreadable(read.errors);
        let total = read.items.len();
        progress(0, total);
        for (n, chunk) in read.items.chunks(BATCH_SIZE).enumerate() {
            let op = E::bulk_of(mode, chunk.to_vec());
            summary.add_answer(chunk.len(), self.bulk_of::<E>(&op).await);
            progress((n * BATCH_SIZE + chunk.len()).min(total), total);
        }
    }
}
